"""What every request of the reward API passes first: a request id, the bearer token, the body limit.

A plain ASGI middleware (no per-request task or body copy beyond the limit), so that a
request without the token or with a body over the limit is answered before any JSON is
parsed: unauthenticated callers learn nothing about the API's validation.
A body that is not declared as JSON is refused (415) before it is read.
The token is compared in constant time and never logged. An exception no handler turned into
an answer is logged here, once, and answered 500 with the request id, like every other error.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
import uuid

from reward.api_metrics import Metrics
from rlhf.core.asgi import BodyTooLarge, media_type, read_body, replay, send_json

PUBLIC = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
JSON_BODY = frozenset({"/v1/score", "/get_reward"})  # other routes answer a POST with 404 or 405
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
REQUEST_ID_KEY = "rlhf.request_id"
# What requests_total records for a request that got no answer because its client went away
# (nginx's "client closed request"), so that client aborts do not look like server errors.
CLIENT_CLOSED = 499

log = logging.getLogger("rlhf.reward.server")


def request_id_of(scope) -> str:
    return scope.get(REQUEST_ID_KEY, "")


async def send_error(send, status: int, kind: str, message: str, request_id: str,
                     headers: dict[str, str] | None = None) -> None:
    await send_json(send, status, {"error": {"type": kind, "message": message}, "request_id": request_id},
                    [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()])


class HttpGuard:
    def __init__(self, app, token: str, max_body_bytes: int, metrics: Metrics):
        if not token:
            raise ValueError("the reward API needs a bearer token")
        self.app = app
        self.expected = f"bearer {token}".encode()
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        got = headers.get(b"authorization", b"")
        # The scheme is case-insensitive (RFC 7235); the token is not.
        got = got[:7].lower() + got[7:]
        return hmac.compare_digest(got, self.expected)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope[REQUEST_ID_KEY] = rid
        status = [0]

        async def send_tagged(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        started = time.perf_counter()
        try:
            await self._guarded(scope, receive, send_tagged, headers, rid)
        except Exception as exc:
            if status[0]:  # the answer has begun: the server closes the connection and logs the error
                raise
            log.error("request %s failed: %s", rid, exc, exc_info=exc)
            await send_error(send_tagged, 500, "internal_error", "the server failed to answer this request", rid)
        finally:
            self.metrics.observe_request(scope["path"], status[0] or CLIENT_CLOSED, time.perf_counter() - started)

    async def _guarded(self, scope, receive, send, headers: dict[bytes, bytes], rid: str) -> None:
        if scope["path"] not in PUBLIC and not self._authorized(headers):
            self.metrics.rejected.labels("unauthorized").inc()
            await send_error(send, 401, "unauthorized", "missing or wrong bearer token", rid,
                             {"WWW-Authenticate": 'Bearer realm="reward-api"'})
            return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            if scope["path"] in JSON_BODY and not _is_json(media_type(headers)):
                # Without this a body sent as a form (curl -d's default) is refused with a 422
                # about the body's shape, which sends the caller to look at the wrong thing.
                await send_error(send, 415, "unsupported_media_type",
                                 "send the body as JSON, with Content-Type: application/json", rid)
                return
            body = await self._read_body(scope, receive, send, headers, rid)
            if body is None:
                return
            receive = replay(body, receive)
        await self.app(scope, receive, send)

    async def _read_body(self, scope, receive, send, headers, rid) -> bytes | None:
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await send_error(send, 400, "bad_request", "Content-Length is not a number", rid)
                return None
            if int(declared) > self.max_body_bytes:
                return await self._too_large(send, rid)
        try:
            return await read_body(receive, self.max_body_bytes)
        except BodyTooLarge:
            return await self._too_large(send, rid)

    async def _too_large(self, send, rid: str) -> None:
        self.metrics.rejected.labels("too_large").inc()
        await send_error(send, 413, "payload_too_large", f"request body over {self.max_body_bytes} bytes", rid)
        return None


def _is_json(kind: bytes) -> bool:
    """application/json or a +json type (a `media_type`): what FastAPI parses as JSON."""
    return kind == b"application/json" or (kind.startswith(b"application/") and kind.endswith(b"+json"))

