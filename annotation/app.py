"""One FastAPI application: the judging UI, the admin view, the JSON API and /healthz.

    /login, /logout        the login form (a session cookie on success)
    /ui/                   the judging screen (Gradio, annotators and admins)
    /admin/                the admin view (Gradio, admins only)
    /api/...               the JSON API; /api/openapi.json its OpenAPI document
    /leaderboard           the leaderboard page (anyone logged in)
    /healthz               liveness and database reachability

`FrontDoor` (annotation.security) sits in front of all of it.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse

from annotation import admin, api, ui
from annotation.auth import Identity
from annotation.context import AppContext
from annotation.gradio_calls import KnownEvents
from annotation.security import IDENTITY_KEY, FrontDoor
from rlhf.core.errors import UserError, validation_details

STATIC = Path(__file__).with_name("static")
ANNOTATOR_PATHS = ("/ui", "/leaderboard")
ADMIN_PATHS = ("/admin", "/api/admin")


def _theme() -> gr.themes.Base:
    # System fonts only: the default theme would fetch web fonts from a remote host.
    return gr.themes.Base(
        font=["ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=["ui-monospace", "Consolas", "monospace"],
    )


def _identity(request: Request) -> Identity | None:
    return request.scope.get(IDENTITY_KEY)


def annotator_dependency(request: Request) -> str | None:
    """Gradio's auth dependency for the judging screen: the annotator's name, or None (401)."""
    who = _identity(request)
    return who.name if who else None


def admin_dependency(request: Request) -> str | None:
    """Gradio's auth dependency for the admin view: None (401) when logged out, 403 for non-admins."""
    who = _identity(request)
    if who is None:
        return None
    if not who.is_admin:
        raise HTTPException(403, "admins only")
    return who.name


pages = APIRouter(include_in_schema=False)


@pages.get(ui.SHORTCUTS_JS_PATH)
def shortcuts() -> FileResponse:
    return FileResponse(STATIC / "shortcuts.js", media_type="text/javascript")


@pages.get("/leaderboard")
def leaderboard(ctx: api.Ctx) -> FileResponse:
    # A page written whole by the leaderboard builder (renamed into place): every model-made
    # string in it is escaped, and its own CSP admits only its one script, by hash.
    page = ctx.leaderboard
    if page is None or not page.is_file():
        raise HTTPException(404, "no leaderboard yet: it is written after each round's gate "
                            "(or run `rlhf leaderboard build`)")
    return FileResponse(page, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})


async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's own 422 in its own shape, less the values it would echo (see validation_details).
    return JSONResponse({"detail": validation_details(exc.errors())}, status_code=422)


def create_app(ctx: AppContext) -> FastAPI:
    # No Swagger or ReDoc page: both load their scripts from a CDN, which the policy blocks (and an
    # offline machine cannot reach).
    app = FastAPI(title=ctx.title, docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    app.add_exception_handler(UserError, api.user_error_handler)
    app.add_exception_handler(RequestValidationError, _invalid)
    api.install(app, ctx)
    app.include_router(pages)

    theme = _theme()
    screens = {"/ui": ui.build(ctx), "/admin": admin.build(ctx)}
    gr.mount_gradio_app(
        app, screens["/ui"], path="/ui", auth_dependency=annotator_dependency, theme=theme, css=ui.CSS,
        head=ui.HEAD, footer_links=[], ssr_mode=False, run_history=False, mcp_server=False,
    )
    gr.mount_gradio_app(
        app, screens["/admin"], path="/admin", auth_dependency=admin_dependency, theme=theme,
        footer_links=[], ssr_mode=False, run_history=False, mcp_server=False,
    )
    app.add_middleware(KnownEvents, screens=screens)  # inside FrontDoor: only logged-in callers reach it
    app.add_middleware(
        FrontDoor, store=ctx.store, signer=ctx.signer, annotator_paths=ANNOTATOR_PATHS, admin_paths=ADMIN_PATHS
    )
    return app
