"""Calls into the Gradio screens that name no event of theirs get a 4xx, not Gradio's 500.

A page joins Gradio's queue (`POST <screen>/gradio_api/queue/join`) naming the event it
runs by `fn_index`, and Gradio's other call routes (`/gradio_api/api/<name>`, ...) take one
too. Gradio looks that index up unchecked, so an unknown one (a page from a build whose
screen had other events, or a hand-made request) raised KeyError inside Gradio and was
answered 500. This middleware reads a JSON body posted to a screen's Gradio routes first and
answers such a call with 422 and a JSON `detail`, as FastAPI answers any other malformed
request; everything else goes on to Gradio unchanged.

Gradio's routes for calling an event directly by name (`/gradio_api/api/<name>`, `run/`,
`call/`) answer 404 here: the screens are pages, which run their events through the queue,
and the annotation app's HTTP API is its JSON API (`/api/...`). Those routes also answered an
unknown name, or too few inputs, with a 500.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rlhf.asgi_body import BodyTooLarge, read_body, replay

# A judging form is a few ranks and a rationale; a body this large is not one.
MAX_CALL_BYTES = 1 << 20


class KnownEvents:
    def __init__(self, app, screens: Mapping[str, Any]):
        """`screens`: mount path (`/ui`) -> its gr.Blocks."""
        self.app = app
        self.routes = [(f"{path}/gradio_api/", blocks) for path, blocks in screens.items()]
        self.direct = tuple(f"{path}/gradio_api/{kind}/" for path in screens for kind in ("api", "run", "call"))

    def _screen(self, scope) -> Any:
        """The Blocks whose Gradio routes a JSON POST goes to, if it does."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        content_type = dict(scope["headers"]).get(b"content-type", b"")
        if content_type.split(b";", 1)[0].strip().lower() != b"application/json":  # uploads are not calls
            return None
        return next((blocks for prefix, blocks in self.routes if scope["path"].startswith(prefix)), None)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith(self.direct):
            await _answer(send, 404, "the screens run their events through Gradio's queue; the HTTP API is /api/")
            return
        blocks = self._screen(scope)
        if blocks is None:
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(receive, MAX_CALL_BYTES)
        except BodyTooLarge:
            await _answer(send, 413, f"request body over {MAX_CALL_BYTES} bytes")
            return
        if body is None:  # the client went away
            return
        if (problem := _unknown_event(body, blocks)) is not None:
            await _answer(send, 422, problem)
            return
        await self.app(scope, replay(body, receive), send)


def _unknown_event(body: bytes, blocks) -> str | None:
    """Why the call names no event of `blocks`; None when it does, or when Gradio's own checks
    (JSON, the body's shape, a missing fn_index) will answer it with a 4xx."""
    try:
        call = json.loads(body)
    except (ValueError, RecursionError):
        return None
    index = call.get("fn_index") if isinstance(call, dict) else None
    if not isinstance(index, int) or isinstance(index, bool):
        return None
    # The screens define their events once, at build (no gr.render), so every session has the same ones.
    if index not in blocks.fns:
        return f"fn_index {index} is not an event of this page: reload the page"
    return None


async def _answer(send, status: int, detail: str) -> None:
    data = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
