"""Calls into the Gradio screens that name no event of theirs get a 4xx, not Gradio's 500.

A page runs a screen's events through Gradio's routes: `POST <screen>/gradio_api/queue/join`
for queued events and `run/<name>` for the others (the judging screen's "clear"), naming the
event by `fn_index`; `api/<name>` and `call/<name>` name it by API name. Gradio looks both up
unchecked, and runs a direct call without checking that it has its inputs, so an unknown
index or name (a page from a build whose screen had other events, or a hand-made request),
or a call with too few inputs, raised inside Gradio and was answered 500. This middleware
reads a JSON body posted to a screen's Gradio routes first and answers those calls with 404
(no such event) or 422 (no event with that index, too few inputs) and a JSON `detail`, as
FastAPI answers any other bad request; everything else goes on to Gradio unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rlhf.core.asgi import BodyTooLarge, media_type, read_body, replay, send_json

# A judging form is a few ranks and a rationale; a body this large is not one.
MAX_CALL_BYTES = 1 << 20
# Gradio's routes that run an event named in the path (`run/<name>`...) rather than in the body alone.
BY_NAME = ("api", "run", "call")


class KnownEvents:
    def __init__(self, app, screens: Mapping[str, Any]):
        """`screens`: mount path (`/ui`) -> its gr.Blocks."""
        self.app = app
        self.routes = [(f"{path}/gradio_api/", blocks) for path, blocks in screens.items()]

    def _screen(self, scope) -> tuple[Any, str] | None:
        """(the Blocks, the route below `gradio_api/`) that a JSON POST goes to, if it is a screen's."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        if media_type(dict(scope["headers"])) != b"application/json":  # uploads are not calls
            return None
        path = scope["path"]
        return next(((blocks, path[len(prefix):]) for prefix, blocks in self.routes if path.startswith(prefix)), None)

    async def __call__(self, scope, receive, send) -> None:
        target = self._screen(scope)
        if target is None:
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(receive, MAX_CALL_BYTES)
        except BodyTooLarge:
            await send_json(send, 413, {"detail": f"request body over {MAX_CALL_BYTES} bytes"})
            return
        if body is None:  # the client went away
            return
        if (problem := _refused(body, *target)) is not None:
            status, detail = problem
            await send_json(send, status, {"detail": detail})
            return
        await self.app(scope, replay(body, receive), send)


def _refused(body: bytes, blocks, route: str) -> tuple[int, str] | None:
    """(status, why) for a call that names no event of `blocks` or lacks its inputs; None when it
    is fine, or when Gradio's own checks (JSON, the body's shape) answer it with a 4xx."""
    try:
        call = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(call, dict):
        return None
    kind, _, name = route.rstrip("/").partition("/")
    index = call.get("fn_index")
    # The screens define their events once, at build (no gr.render), so every session has the same ones.
    if isinstance(index, int) and not isinstance(index, bool):
        fn = blocks.fns.get(index)
        if fn is None:
            return 422, f"fn_index {index} is not an event of this page: reload the page"
    elif kind in BY_NAME and index is None:
        fn = next((f for f in blocks.fns.values() if f.api_name == name), None)
        if fn is None:
            return 404, f"this page has no event named {name!r}"
    else:
        return None
    data = call.get("data")
    # A direct call runs at once (queued ones fail in their event stream): Gradio raises on too few inputs.
    if kind in ("api", "run") and isinstance(data, list) and len(data) < len(fn.inputs):
        return 422, f"event {fn.api_name!r} takes {len(fn.inputs)} inputs, not {len(data)}"
    return None

