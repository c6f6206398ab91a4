"""The scoring routes answered straight from ASGI, past FastAPI's per-request machinery.

FastAPI declares `/v1/score` and `/get_reward`: their typed endpoint functions, their
OpenAPI entries. Under load these two routes are nearly every request, and FastAPI's routing,
dependency solving, `Request` body parsing (JSON decoded, then validated as Python objects)
and response wrapping cost more of the server's CPU than the chat template and the
tokenizer together. This middleware sits inside `HttpGuard` (token, body limit, request id
already done) and calls the same endpoint functions with the body validated by pydantic
straight from its JSON bytes; errors take the same handlers, so the answers are the same.
Every other route goes on to FastAPI.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

# The handlers FastAPI has for the same failures (reward/server.py), so that both paths answer alike.
ValidationHandler = Callable[[Request, list[dict]], Response]
HttpErrorHandler = Callable[[Request, HTTPException], Response]


@dataclass
class DirectRoute:
    body: TypeAdapter  # the endpoint's body type
    endpoint: Callable[..., Awaitable[Response]]  # endpoint(body, request, **query)
    query: tuple[str, ...] = ()  # optional string query parameters, passed by name


@dataclass
class DirectRoutes:
    app: Any
    routes: dict[str, DirectRoute]
    invalid: ValidationHandler
    http_error: HttpErrorHandler

    async def __call__(self, scope, receive, send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":  # GET /v1/score and the like: FastAPI's 405
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        # HttpGuard, outside this, has read the whole body (within its limit) and replays it as one message.
        response = await self._answer(route, request, (await receive()).get("body", b""))
        await response(scope, receive, send)

    async def _answer(self, route: DirectRoute, request: Request, body: bytes) -> Response:
        try:
            parsed = _parse(route.body, body)
        except ValidationError as err:
            # FastAPI's locations start at the body ("body", field, ...): the same answer either way.
            return self.invalid(request, [{**e, "loc": ("body", *e["loc"])} for e in err.errors(include_input=False)])
        except (ValueError, RecursionError):  # not JSON in any encoding, or nested past Python's stack
            return self.invalid(request, [{"type": "json_invalid", "loc": ("body",), "msg": "invalid JSON"}])
        kwargs = _query(request.scope, route.query) if route.query else {}
        try:
            return await route.endpoint(parsed, request, **kwargs)
        except HTTPException as err:
            return self.http_error(request, err)


def _parse(adapter: TypeAdapter, body: bytes) -> Any:
    """The body validated straight from its bytes (UTF-8 JSON, the fast case), or else as FastAPI
    reads it: `json.loads` also takes a byte-order mark, UTF-16 and lone surrogate escapes."""
    try:
        return adapter.validate_json(body)
    except ValidationError as err:
        if not any(e["type"] == "json_invalid" for e in err.errors(include_input=False)):
            raise
    return adapter.validate_python(json.loads(body))


def _query(scope, names: tuple[str, ...]) -> dict[str, str | None]:
    # The last of repeated parameters, as FastAPI's Query(str) reads them.
    given = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
    return {n: given.get(n) for n in names}
