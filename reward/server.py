"""The reward-model API: FastAPI over any trained reward model.

    POST /v1/score     conversations, or a prompt and responses -> one score per response
    POST /get_reward   OpenRLHF's remote reward model: {"query": [...]} -> {"rewards": [...]}
    GET  /v1/models    the served models and their input limits
    GET  /healthz      liveness (no token): 503 once the model worker has died
    GET  /metrics      Prometheus text format
    GET  /openapi.json, /docs

Every route but /healthz and the OpenAPI document needs `Authorization: Bearer TOKEN`.
Scores come from reward/score.py's `forward` on batches formed by reward/batching.py (in the
model worker process, reward/worker.py, or on a thread here), so they equal in-process
scores up to float noise. Limits answer with 413 (body bytes, inputs
per request, tokens per input), a full queue with 429 and Retry-After; every error is JSON
`{"error": {"type", "message"}, "request_id"}` and every response carries X-Request-ID.
The two scoring routes are declared here (their OpenAPI entries, their endpoint functions) and
answered by reward/direct_routes.py, which calls those functions past FastAPI's per-request
machinery: under load they are nearly every request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import TypeAdapter
from starlette.exceptions import HTTPException as StarletteHTTPException

from reward.api_metrics import Metrics
from reward.api_schema import (
    ConversationsRequest,
    GetRewardRequest,
    GetRewardResponse,
    Health,
    ModelList,
    ScoreRequest,
    ScoreResponse,
    ServedModel,
    Usage,
    error_responses,
)
from reward.batching import BatchSettings, Forward
from reward.direct_routes import DirectRoute, DirectRoutes
from reward.dispatch import ClientGone, Dispatcher, InProcess, QueueFull, ShuttingDown
from reward.http_guard import HttpGuard, request_id_of
from reward.score import encode, encode_conversation, encode_text, forward_pass
from reward.worker import WorkerError
from rlhf.core.errors import validation_details
from rlhf.core.models import load_reward_model, load_tokenizer, trained_length


@dataclass
class ServerSettings:
    token: str
    batch: BatchSettings = field(default_factory=BatchSettings)
    max_tokens: int = 1024  # per input; also capped by the model's max_position_embeddings
    max_inputs: int = 256  # per request
    max_body_bytes: int = 1 << 20


@dataclass
class LoadedModel:
    name: str
    model: Any  # None when the forward passes run in a worker process (reward/worker.py)
    tokenizer: Any
    max_positions: int = 1 << 30
    window: int | None = None  # the length it was trained on: longer inputs keep their last tokens

    @property
    def max_tokens(self) -> int:
        return self.max_positions


def default_forward(m: LoadedModel) -> Forward:
    m.model.eval()
    return partial(forward_pass, m.model, m.tokenizer.pad_token_id)


class ApiError(HTTPException):
    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(status, message, headers)
        self.kind = kind


def _error(request: Request, status: int, kind: str, message: str, details=None, headers=None) -> JSONResponse:
    body: dict[str, Any] = {"error": {"type": kind, "message": message}, "request_id": request_id_of(request.scope)}
    if details is not None:
        body["error"]["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


async def _disconnected(receive) -> bool:
    """Whether the client went away: once the body is read, the server's next message is
    http.disconnect (when the client leaves or the response is complete)."""
    return (await receive())["type"] == "http.disconnect"


def _json(body) -> Response:
    """A response model serialized once, by pydantic, with no re-validation (the hot path)."""
    return Response(body.model_dump_json(), media_type="application/json")


def _invalid(request: Request, errors: list[dict]) -> JSONResponse:
    if any(e.get("type") == "json_invalid" for e in errors):
        return _error(request, 400, "malformed_json", "the request body is not valid JSON")
    details = validation_details(errors)
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    return _error(request, 422, "invalid_request", f"{'.'.join(first['loc'])}: {first['msg']}", details)


def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    kind = getattr(exc, "kind", {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error"))
    return _error(request, exc.status_code, kind, str(exc.detail), headers=exc.headers)


async def _on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    return _invalid(request, exc.errors())


async def _on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return _http_error(request, exc)


@dataclass
class Service:
    """What the routes share (one per app, on `app.state.service`): the served models, the limits,
    where forward passes go and the metrics; and the checks every scoring request passes."""

    models: list[LoadedModel]
    settings: ServerSettings
    dispatcher: Dispatcher
    metrics: Metrics
    by_name: dict[str, LoadedModel] = field(init=False)
    max_inputs: int = field(init=False)

    def __post_init__(self) -> None:
        self.by_name = {m.name: m for m in self.models}
        # A request over the queue's limit would get 429 on every retry, even on an empty queue.
        self.max_inputs = min(self.settings.max_inputs, self.settings.batch.max_queue)

    def pick(self, name: str | None) -> LoadedModel:
        if name is None:
            return self.models[0]
        if name not in self.by_name:
            raise ApiError(404, "unknown_model", f"model {name[:100]!r} is not served; served: {', '.join(self.by_name)}")
        return self.by_name[name]

    def check_count(self, n: int) -> None:
        if n > self.max_inputs:
            self.metrics.rejected.labels("too_many_inputs").inc()
            raise ApiError(413, "too_many_inputs", f"{n} inputs in one request; the limit is {self.max_inputs}")

    def checked(self, m: LoadedModel, seqs: list[list[int]]) -> list[list[int]]:
        limit = min(self.settings.max_tokens, m.max_tokens)
        for i, s in enumerate(seqs):
            if len(s) > limit:
                self.metrics.rejected.labels("too_many_tokens").inc()
                raise ApiError(413, "input_too_long", f"input {i} has {len(s)} tokens; the limit is {limit}")
            if not s:
                raise ApiError(422, "empty_input", f"input {i} has no tokens")
        # As in-process scoring does (reward.score.score_ids), so that the scores are the same.
        return [s[-m.window:] for s in seqs] if m.window else seqs

    def encoded(self, m: LoadedModel, fn: Callable[[], list[list[int]]]) -> list[list[int]]:
        try:
            return self.checked(m, fn())
        except ApiError:
            raise
        except Exception as err:  # noqa: BLE001 - a chat template may refuse a conversation (role order)
            raise ApiError(422, "template_error", f"the model's chat template rejected the input: {err}") from None

    async def run(self, m: LoadedModel, seqs: list[list[int]], request: Request) -> list[float]:
        try:
            return await self.dispatcher.submit(m.name, seqs, partial(_disconnected, request.receive))
        except QueueFull as err:
            self.metrics.rejected.labels("queue_full").inc()
            raise ApiError(429, "queue_full", str(err), {"Retry-After": "1"}) from None
        except (ShuttingDown, WorkerError) as err:
            raise ApiError(503, "unavailable", str(err)) from None
        except ClientGone as err:
            # Nobody reads this answer; its status (nginx's 499) keeps abandoned requests apart
            # from failures in rlhf_reward_requests_total.
            raise ApiError(499, "client_closed_request", str(err)) from None


# Async on purpose: FastAPI runs a sync dependency on a worker thread, a hop for a lookup.
async def service(request: Request) -> Service:
    return request.app.state.service


Served = Annotated[Service, Depends(service)]
# Declares the scheme in the OpenAPI document; HttpGuard enforces it before routing. The two
# scoring routes name it in their document entry instead: as a dependency it would run on
# every request for nothing (~75 us, 13% of a request's CPU in the server).
bearer = Security(HTTPBearer(auto_error=False, description="The server's token (RLHF_REWARD_TOKEN)."))
documented_bearer = {"security": [{"HTTPBearer": []}]}

router = APIRouter()


@router.post("/v1/score", response_model=ScoreResponse, openapi_extra=documented_bearer,
             responses=error_responses(400, 401, 404, 413, 415, 422, 429, 503))
async def score(body: ScoreRequest, request: Request, api: Served) -> Response:
    """Score conversations (each at its last message) or several responses to one prompt."""
    m = api.pick(body.model)
    tok = m.tokenizer
    if isinstance(body, ConversationsRequest):
        api.check_count(len(body.conversations))
        convs = [[msg.model_dump() for msg in c] for c in body.conversations]
        seqs = api.encoded(m, lambda: [encode_conversation(tok, c) for c in convs])
    else:
        api.check_count(len(body.responses))
        prompt = ([{"role": "user", "content": body.prompt}] if isinstance(body.prompt, str)
                  else [msg.model_dump() for msg in body.prompt])
        seqs = api.encoded(m, lambda: [encode(tok, prompt, r) for r in body.responses])
    scores = await api.run(m, seqs, request)
    return _json(ScoreResponse.model_construct(model=m.name, scores=scores, request_id=request_id_of(request.scope),
                                               usage=Usage.model_construct(inputs=len(seqs),
                                                                           tokens=sum(map(len, seqs)))))


@router.post("/get_reward", response_model=GetRewardResponse, openapi_extra=documented_bearer,
             responses=error_responses(400, 401, 404, 413, 415, 422, 429, 503))
async def get_reward(body: GetRewardRequest, request: Request, api: Served,
                     model: str | None = Query(None, description="Served model (default: the first).")
                     ) -> Response:
    """OpenRLHF's remote reward model: each query is prompt + response in the chat template."""
    # The URL wins over the body: a proxy that routes by URL decides for its clients.
    m = api.pick(body.model if model is None else model)
    api.check_count(len(body.query))
    seqs = api.encoded(m, lambda: [encode_text(m.tokenizer, q) for q in body.query])
    scores = await api.run(m, seqs, request)
    return _json(GetRewardResponse.model_construct(rewards=scores, scores=scores))


@router.get("/v1/models", response_model=ModelList, dependencies=[bearer], responses=error_responses(401))
async def list_models(api: Served) -> ModelList:
    return ModelList(models=[ServedModel(name=m.name, max_tokens=min(api.settings.max_tokens, m.max_tokens))
                             for m in api.models])


@router.get("/healthz", response_model=Health,
            responses={503: {**error_responses(503)[503], "description": "The model worker died, or the server "
                                                                          "is shutting down."}})
async def healthz(request: Request, api: Served) -> Health | JSONResponse:
    if api.dispatcher.failure is not None:
        return _error(request, 503, "unavailable", api.dispatcher.failure)
    return Health(status="ok", models=list(api.by_name))


# Load balancers and uptime checks probe with HEAD; the document keeps the GET.
router.head("/healthz", include_in_schema=False, response_model=None)(healthz)


@router.get("/metrics", dependencies=[bearer], responses={200: {"content": {CONTENT_TYPE_LATEST: {}}},
                                                          **error_responses(401)})
async def prometheus(api: Served) -> Response:
    return Response(generate_latest(api.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    dispatcher = app.state.service.dispatcher
    dispatcher.start()
    try:
        yield
    finally:
        await dispatcher.stop()


def create_app(models: list[LoadedModel], settings: ServerSettings,
               forward_factory: Callable[[LoadedModel], Forward] = default_forward,
               dispatcher: Dispatcher | None = None) -> FastAPI:
    """The API over `models`. Forward passes run on a thread here (`forward_factory` makes each
    model's), or wherever `dispatcher` sends them (reward/worker.py's ForwardProcess)."""
    if not models:
        raise ValueError("serve at least one model")
    metrics = Metrics()
    if dispatcher is None:
        dispatcher = InProcess(lambda: {m.name: forward_factory(m) for m in models}, settings.batch)
    dispatcher.on_batch = metrics.observe_batch
    for m in models:
        metrics.watch_queue(m.name, partial(dispatcher.queued, m.name))
    api = Service(models, settings, dispatcher, metrics)

    app = FastAPI(title="RLHF reward-model API", version="1", lifespan=lifespan,
                  description="Scores responses with trained reward models. Send `Authorization: Bearer TOKEN`.")
    app.add_exception_handler(RequestValidationError, _on_invalid)
    # Unexpected exceptions are answered (500, with X-Request-ID) and logged by HttpGuard: a
    # handler for Exception here would run outside it, and the exception would be logged twice.
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.state.service = api
    # Also by name: tests and tools read them from here.
    app.state.metrics = metrics
    app.state.dispatcher = dispatcher
    app.include_router(router)

    # Middleware added last runs first: HttpGuard, then the scoring routes' direct path, which
    # calls the endpoints with this app's service bound (no dependency solving on that path).
    app.add_middleware(DirectRoutes, invalid=_invalid, http_error=_http_error, routes={
        "/v1/score": DirectRoute(TypeAdapter(ScoreRequest), partial(score, api=api)),
        "/get_reward": DirectRoute(TypeAdapter(GetRewardRequest), partial(get_reward, api=api), query=("model",)),
    })
    app.add_middleware(HttpGuard, token=settings.token, max_body_bytes=settings.max_body_bytes, metrics=metrics)
    return app


def load_model(name: str, path: str, trust_remote_code: bool = False, dtype: str = "float32",
               weights: bool = True) -> LoadedModel:
    """A saved reward model (safetensors only) and its tokenizer, ready to serve under `name`.

    With `weights=False` only the tokenizer and config are loaded: the weights live in a
    worker process (reward/worker.py).
    """
    tok = load_tokenizer(path, None, trust_remote_code)
    tok.padding_side = "right"
    if not weights:
        # Here, not at the top: transformers takes seconds to import, and building the app (the CLI,
        # the OpenAPI document, the tests) needs none of it.
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        return LoadedModel(name, None, tok, _positions(config), trained_length(config))
    model = load_reward_model(path, None, trust_remote_code, dtype, trained=True)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    return LoadedModel(name, model.eval(), tok, _positions(model.config), trained_length(model.config))


def _positions(config) -> int:
    return int(getattr(config, "max_position_embeddings", None) or (1 << 30))
