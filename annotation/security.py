"""The app's front door: who is asking, may they, and the headers every response carries.

One ASGI middleware in front of everything (FastAPI routes and the mounted Gradio apps):

- resolves the session cookie to an `Identity` once per request (`scope["rlhf_identity"]`);
- gates the mounted UIs: without a session a page request is redirected to /login and
  anything else (Gradio's config, queue, upload and file routes included) gets 401;
  the admin UI answers 403 to annotators. Gradio's own `auth_dependency` checks again;
- sends a Content-Security-Policy: scripts only from this origin or carrying the
  per-response nonce that this middleware adds to the inline and same-origin `<script>`
  tags of the app's own HTML pages (Gradio's bootstrap); images, fonts and connections only to this origin;
  no plugins, framing or inline event handlers;
- asks for uncompressed responses, so that the HTML can be given its nonce.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool

from annotation.auth import COOKIE, Identity, SessionSigner
from rlhf.core.asgi import send_json
from rlhf.core.store import Store

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

IDENTITY_KEY = "rlhf_identity"
# A <script> tag that is inline or loads from this origin; a script from another host gets no nonce,
# so the policy blocks it (FastAPI's Swagger page, for one, loads its script from a CDN).
_SCRIPT_TAG = re.compile(rb"<script(?=[\s>])(?![^>]*\ssrc\s*=\s*[\"']?\s*(?:[a-z][a-z0-9+.-]*:|//))", re.IGNORECASE)


def csp(nonce: str) -> str:
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' 'nonce-{nonce}'",
            "script-src-attr 'none'",
            # Gradio positions and themes its components with inline styles.
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "media-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def _cookie(scope: Scope) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                name, _, val = part.strip().partition("=")
                if name == COOKIE:
                    return val
    return None


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return ""


class FrontDoor:
    """ASGI middleware: identity, gate and security headers (see the module doc)."""

    def __init__(
        self, app: ASGIApp, store: Store, signer: SessionSigner, annotator_paths: tuple[str, ...], admin_paths: tuple[str, ...]
    ) -> None:
        self.app, self.store, self.signer = app, store, signer
        self.annotator_paths, self.admin_paths = annotator_paths, admin_paths

    def identity(self, scope: Scope) -> Identity | None:
        cookie = _cookie(scope)
        if not cookie:
            return None
        with self.store.session(readonly=True) as s:
            return self.signer.resolve(s, cookie)

    @staticmethod
    def _under(path: str, prefixes: tuple[str, ...]) -> bool:
        return any(path == p or path.startswith(p + "/") for p in prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            # No route of this app uses websockets; refuse them on the gated paths all the same.
            who = await run_in_threadpool(self.identity, scope)
            path = scope.get("path", "")
            gated = self._under(path, self.annotator_paths + self.admin_paths)
            if gated and (who is None or (self._under(path, self.admin_paths) and not who.is_admin)):
                await send({"type": "websocket.close", "code": 1008})
                return
            scope[IDENTITY_KEY] = who
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Compressed bodies cannot be given a nonce; this app serves a LAN or loopback.
        scope["headers"] = [(k, v) for k, v in scope.get("headers", []) if k != b"accept-encoding"]
        path = scope.get("path", "")
        who = None
        if path != "/healthz":
            who = await run_in_threadpool(self.identity, scope)
        scope[IDENTITY_KEY] = who
        nonce = secrets.token_urlsafe(16)
        gated = self._under(path, self.annotator_paths + self.admin_paths)
        if gated and who is None:
            wants_page = scope.get("method") == "GET" and "text/html" in _header(scope, b"accept")
            if wants_page:
                await _redirect(send, "/login?next=" + quote(path, safe="/"), nonce)
            else:
                await _json(send, 401, {"detail": "not logged in"}, nonce)
            return
        if self._under(path, self.admin_paths) and who is not None and not who.is_admin:
            await _json(send, 403, {"detail": "admins only"}, nonce)
            return
        await self.app(scope, receive, _secured(send, nonce))


def _security_headers(nonce: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-security-policy", csp(nonce).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    ]


def _secured(send: Send, nonce: str) -> Send:
    """Wrap `send`: add the security headers; buffer HTML bodies to put the nonce on their scripts."""
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _REPLACED]
            headers += _security_headers(nonce)
            message = {**message, "headers": headers}
            ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
            if ctype.startswith(b"text/html"):
                start.update(message)
                return
            await send(message)
            return
        if message["type"] == "http.response.body" and start:
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = _SCRIPT_TAG.sub(b'<script nonce="' + nonce.encode() + b'"', b"".join(chunks))
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await send(message)

    return wrapped


_REPLACED = {b"content-security-policy", b"x-frame-options", b"x-content-type-options", b"referrer-policy"}


async def _json(send: Send, status: int, body: dict, nonce: str) -> None:
    await send_json(send, status, body, _security_headers(nonce))


async def _redirect(send: Send, location: str, nonce: str) -> None:
    headers = [(b"location", location.encode()), (b"content-length", b"0")]
    await send({"type": "http.response.start", "status": 303, "headers": headers + _security_headers(nonce)})
    await send({"type": "http.response.body", "body": b""})
