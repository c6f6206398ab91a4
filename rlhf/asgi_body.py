"""A request body read whole by an ASGI middleware, under a size limit, and handed on unchanged.

For middlewares that must look at a body before the app does (the reward API's guard, the
annotation app's check of Gradio calls): the body is read once, and the app downstream
receives it as if nobody had.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

Receive = Callable[[], Awaitable[dict]]


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
