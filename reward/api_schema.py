"""Request and response bodies of the reward-model API (they make its OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChatMessage(Strict):
    role: Literal["system", "user", "assistant"]
    content: str


Conversation = Annotated[list[ChatMessage], Field(min_length=1)]

MODEL_FIELD = Field(None, description="A served model's name; default: the first `--model` the server was started with.")


class ConversationsRequest(Strict):
    """Whole conversations; each is scored at its last message (the response)."""

    model: str | None = MODEL_FIELD
    conversations: list[Conversation] = Field(min_length=1)


class PromptResponsesRequest(Strict):
    """One prompt and several responses to it; each response is scored after the prompt."""

    model: str | None = MODEL_FIELD
    prompt: str | Conversation = Field(description="A user message, or the conversation so far.")
    responses: list[str] = Field(min_length=1)


ScoreRequest = ConversationsRequest | PromptResponsesRequest


class Usage(BaseModel):
    inputs: int
    tokens: int


class ScoreResponse(BaseModel):
    model: str
    scores: list[float] = Field(description="One score per conversation or response, in request order.")
    request_id: str
    usage: Usage


class GetRewardRequest(BaseModel):
    """OpenRLHF's remote reward-model request: prompt + response already rendered in the chat template."""

    model_config = ConfigDict(extra="allow")
    model: str | None = Field(None, description="A served model's name (`?model=` wins over it); default: the first "
                                                "`--model` the server was started with.")
    query: list[str] = Field(min_length=1)
    prompts: list[str] | None = Field(None, description="Accepted for compatibility; not used.")
    labels: list[Any] | None = Field(None, description="Accepted for compatibility; not used.")


class GetRewardResponse(BaseModel):
    rewards: list[float]
    scores: list[float] = Field(description="The same values as `rewards` (newer OpenRLHF reads this key).")


class ServedModel(BaseModel):
    name: str
    max_tokens: int


class ModelList(BaseModel):
    models: list[ServedModel]


class Health(BaseModel):
    status: Literal["ok"]
    models: list[str]


class ErrorDetail(BaseModel):
    type: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
    request_id: str


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    meaning = {
        400: "Malformed JSON.",
        401: "Missing or wrong bearer token.",
        404: "Unknown model.",
        413: "Request body, number of inputs or an input's tokens over the server's limits.",
        415: "The body is not sent as JSON (Content-Type: application/json).",
        422: "Well-formed JSON of the wrong shape or types.",
        429: "The queue is full; retry after the Retry-After header's seconds.",
        503: "The server is shutting down.",
    }
    return {c: {"model": ErrorBody, "description": meaning[c]} for c in codes}
