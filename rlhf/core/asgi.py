"""What the plain ASGI middlewares (the reward API's guard, the annotation app's front door and
its check of Gradio calls) do by hand: read a request's media type, read its body whole and pass
it on, answer with JSON.

A middleware that must look at a body before the app does reads it once, under a size limit,
and the app downstream receives it as if nobody had.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class BodyTooLarge(Exception):
    """The body grew past the limit; what was read of it is dropped."""


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None when the client went away first; BodyTooLarge past `limit` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def media_type(headers: dict[bytes, bytes]) -> bytes:
    """The request's Content-Type without its parameters, lower case (`application/json`); b"" if none."""
    return headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives `body` as one message, then whatever `receive` gives (a disconnect)."""
    sent = False

    async def replayed() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def send_json(send: Send, status: int, body: Any, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """A whole JSON response: `body` encoded, its length declared, `headers` added."""
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})
