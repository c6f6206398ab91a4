"""The JSON API (used by the UI's load tests, the Argilla bridge and scripts), login and health.

Every route but /healthz and the login pages needs a session cookie (POST /api/login or
the /login form); /api/admin/* needs the admin role. Errors are JSON: 400 for a bad
request (a `UserError`), 401 without a session, 403 for a non-admin, 422 for a body of
the wrong shape.
"""

from __future__ import annotations

import html
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import text

from annotation import auth, oversight, work
from annotation.auth import Identity
from annotation.context import AppContext
from annotation.security import IDENTITY_KEY
from rlhf.core.types import MAX_DB_INT, MAX_OVERLAP

MAX_NAME = 128
MAX_SECRET = 256


class LoginIn(BaseModel):
    name: str = Field(min_length=1, max_length=MAX_NAME)
    password: str = Field(min_length=1, max_length=MAX_SECRET)


# Ids and round numbers the database can hold: a larger one is a 422 here, not a driver error (500).
Id = Annotated[int, Field(ge=1, le=MAX_DB_INT)]
TaskId = Annotated[int, PathParam(ge=1, le=MAX_DB_INT)]
RoundNo = Annotated[int | None, Query(ge=1, le=MAX_DB_INT)]


class JudgmentIn(BaseModel):
    ranking: list[list[Id]] = Field(description="Groups of candidate ids, best first; a group of several is a tie.")
    strength: str | None = Field(None, description="For a pair with a winner: significantly_better ... negligibly_better.")
    unsafe: list[Id] = Field(default_factory=list, description="Candidate ids flagged unsafe.")
    rationale: str = Field("", max_length=5000)
    seconds: float = Field(0.0, ge=0, le=86400)


class AnnotatorIn(BaseModel):
    name: str = Field(min_length=1, max_length=MAX_NAME)
    role: str = "annotator"


class GoldIn(BaseModel):
    ranking: str = Field(description="Letters as shown on screen, best first: 'B > A = C'.")
    unsafe: str = Field("", description="Letters of unsafe candidates, e.g. 'C'.")
    overlap: int | None = Field(None, ge=1, le=MAX_OVERLAP)


# Async on purpose: FastAPI runs a sync dependency on a worker thread, and each extra thread
# hop on a loaded server is a wait for the GIL. These only read the app's state (`install`)
# and what FrontDoor resolved.
async def app_context(request: Request) -> AppContext:
    return request.app.state.ctx


async def optional_identity(request: Request) -> Identity | None:
    return request.scope.get(IDENTITY_KEY)


async def identity(who: Annotated[Identity | None, Depends(optional_identity)]) -> Identity:
    if who is None:
        raise HTTPException(401, "not logged in")
    return who


async def admin(who: Annotated[Identity, Depends(identity)]) -> Identity:
    if not who.is_admin:
        raise HTTPException(403, "admins only")
    return who


Ctx = Annotated[AppContext, Depends(app_context)]
MaybeWho = Annotated[Identity | None, Depends(optional_identity)]
Who = Annotated[Identity, Depends(identity)]
Admin = Annotated[Identity, Depends(admin)]


def safe_next(target: str | None, default: str = "/ui/") -> str:
    """Only a path on this site: no scheme, no host, no protocol-relative `//host`."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}: log in</title>
<style>body{{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem}}
label{{display:block;margin:.8rem 0 .2rem}}input{{width:100%;padding:.4rem;font-size:1rem}}
button{{margin-top:1rem;padding:.5rem 1.2rem;font-size:1rem}}.err{{color:#b00020}}</style></head>
<body><h1>{title}</h1>{message}
<form method="post" action="/login">
<input type="hidden" name="next" value="{next}">
<label for="name">Name</label><input id="name" name="name" autocomplete="username" required autofocus>
<label for="password">Credential</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit" id="login">Log in</button></form></body></html>"""


def _set_cookie(ctx: AppContext, resp: Response, who: Identity) -> None:
    with ctx.store.session(readonly=True) as s:
        value = ctx.signer.issue(s, who)
    resp.set_cookie(
        auth.COOKIE, value, max_age=ctx.signer.max_age_s, httponly=True, samesite="lax",
        secure=ctx.secure_cookies, path="/",
    )


def _login_page(ctx: AppContext, nxt: str, message: str = "", status: int = 200) -> HTMLResponse:
    body = LOGIN_PAGE.format(title=html.escape(ctx.title), next=html.escape(safe_next(nxt)), message=message)
    return HTMLResponse(body, status_code=status)


def _check(ctx: AppContext, name: str, password: str) -> Identity | None:
    with ctx.store.session(readonly=True) as s:
        return auth.authenticate(s, name, password)


def _end_sessions(ctx: AppContext, who: Identity | None) -> None:
    if who is not None:
        with ctx.store.session() as s:
            auth.end_sessions(s, who.id)


router = APIRouter()


@router.get("/healthz")
def healthz(ctx: Ctx) -> JSONResponse:
    try:
        with ctx.store.session(readonly=True) as s:
            s.execute(text("SELECT 1"))
    except Exception as err:  # noqa: BLE001 - health reports any database failure as 503
        return JSONResponse({"status": "unavailable", "reason": type(err).__name__}, status_code=503)
    return JSONResponse({"status": "ok", "database": ctx.store.backend})


# HEAD too: load balancers and uptime checks probe with it (a 405 reads as "down").
router.head("/healthz", include_in_schema=False)(healthz)


@router.get("/", include_in_schema=False)
def root(who: MaybeWho) -> RedirectResponse:
    return RedirectResponse("/admin/" if who and who.is_admin else "/ui/", status_code=303)


@router.get("/login", include_in_schema=False)
def login_form(ctx: Ctx, next: str = "/ui/") -> HTMLResponse:
    return _login_page(ctx, next)


@router.post("/login", include_in_schema=False)
def login_submit(
    ctx: Ctx,
    name: Annotated[str, Form(max_length=MAX_NAME)],
    password: Annotated[str, Form(max_length=MAX_SECRET)],
    next: Annotated[str, Form()] = "/ui/",
) -> Response:
    who = _check(ctx, name, password)
    if who is None:
        return _login_page(ctx, next, '<p class="err" id="login-error">Unknown name or wrong credential.</p>', 401)
    resp = RedirectResponse(safe_next(next, "/admin/" if who.is_admin else "/ui/"), status_code=303)
    _set_cookie(ctx, resp, who)
    return resp


@router.api_route("/logout", methods=["GET", "POST"], include_in_schema=False)
def logout(ctx: Ctx, who: MaybeWho) -> RedirectResponse:
    """Log out: ends every session of this annotator, on every device, not just this browser's."""
    _end_sessions(ctx, who)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(auth.COOKIE, path="/")
    return resp


@router.post("/api/login")
def api_login(body: LoginIn, ctx: Ctx) -> JSONResponse:
    who = _check(ctx, body.name, body.password)
    if who is None:
        return JSONResponse({"detail": "unknown name or wrong credential"}, status_code=401)
    resp = JSONResponse({"name": who.name, "role": who.role})
    _set_cookie(ctx, resp, who)
    return resp


@router.post("/api/logout")
def api_logout(ctx: Ctx, who: MaybeWho) -> JSONResponse:
    """End every session of the logged-in annotator, on every device (copies of the cookie included)."""
    _end_sessions(ctx, who)
    resp = JSONResponse({"logged_out": True})
    resp.delete_cookie(auth.COOKIE, path="/")
    return resp


@router.get("/api/me")
def me(who: Who) -> dict[str, Any]:
    return {"name": who.name, "role": who.role}


@router.post("/api/tasks/next")
def next_task(who: Who, ctx: Ctx) -> dict[str, Any]:
    view = work.next_task(ctx.store, who, ctx.lease_seconds)
    return {"task": view.as_json() if view else None}


@router.post("/api/tasks/{task_id}/judgment")
def submit(task_id: TaskId, body: JudgmentIn, who: Who, ctx: Ctx) -> dict[str, Any]:
    done = work.submit(
        ctx.store, who, task_id, body.ranking, strength=body.strength, unsafe=body.unsafe,
        rationale=body.rationale, seconds=body.seconds, source="api",
    )
    return {"judgment_id": done.judgment_id, "task_id": done.task_id, "duplicate": done.duplicate}


@router.post("/api/tasks/{task_id}/skip")
def skip(task_id: TaskId, who: Who, ctx: Ctx) -> dict[str, Any]:
    work.skip(ctx.store, who, task_id)
    return {"skipped": task_id}


@router.get("/api/progress")
def progress(who: Who, ctx: Ctx, round: RoundNo = None) -> dict[str, Any]:
    with ctx.store.session(readonly=True) as s:
        rid = oversight.round_id(s, round)
    return work.my_progress(ctx.store, who, rid)


# --- admin ---------------------------------------------------------------------


@router.get("/api/admin/annotators")
def annotators(_: Admin, ctx: Ctx) -> list[dict[str, Any]]:
    with ctx.store.session(readonly=True) as s:
        return oversight.annotator_stats(s)


@router.post("/api/admin/annotators")
def add_annotator(body: AnnotatorIn, _: Admin, ctx: Ctx) -> dict[str, Any]:
    with ctx.store.session() as s:
        row, secret = auth.add_annotator(s, body.name, body.role)
        return {"name": row.name, "role": row.role, "credential": secret}


@router.post("/api/admin/annotators/{name}/deactivate")
def deactivate(name: str, _: Admin, ctx: Ctx) -> dict[str, Any]:
    with ctx.store.session() as s:
        row = auth.set_active(s, name, False)
        return {"name": row.name, "active": row.active}


@router.get("/api/admin/rounds")
def rounds(_: Admin, ctx: Ctx) -> list[dict[str, Any]]:
    with ctx.store.session(readonly=True) as s:
        return oversight.rounds_progress(s)


@router.get("/api/admin/quality")
def quality(_: Admin, ctx: Ctx, round: RoundNo = None) -> dict[str, Any]:
    with ctx.store.session(readonly=True) as s:
        return oversight.quality(s, round)


@router.get("/api/admin/gold")
def gold(_: Admin, ctx: Ctx) -> list[dict[str, Any]]:
    with ctx.store.session(readonly=True) as s:
        return oversight.gold_tasks(s)


@router.put("/api/admin/tasks/{task_id}/gold")
def set_gold(task_id: TaskId, body: GoldIn, _: Admin, ctx: Ctx) -> dict[str, Any]:
    with ctx.store.session() as s:
        task = oversight.set_gold(s, task_id, body.ranking, body.unsafe, body.overlap)
        return {"task": task.id, "gold": task.gold, "overlap": task.overlap}


@router.get("/api/admin/export")
def export(
    _: Admin,
    ctx: Ctx,
    round: RoundNo = None,
    kind: Annotated[str, Query(pattern="^(helpful|safety)$")] = "helpful",
) -> Response:
    if ctx.export is None:
        raise HTTPException(501, "this server was started without an exporter")
    rows = ctx.export(round, kind)
    body = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    name = f"preferences-{kind}-{'all' if round is None else f'iter-{round:03d}'}.jsonl"
    return Response(body, media_type="application/x-ndjson",
                    headers={"content-disposition": f'attachment; filename="{name}"'})


def install(app: FastAPI, ctx: AppContext) -> None:
    """Serve these routes on `app` over `ctx`: `app_context` reads it from `app.state`, so the
    app's other routes that take `Ctx` (annotation/app.py) see the same one."""
    app.state.ctx = ctx
    app.include_router(router)


def user_error_handler(_: Request, err: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(err)}, status_code=400)

