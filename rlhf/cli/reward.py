"""`rlhf reward ...`: the reward-model API.

    rlhf reward serve --model NAME_OR_PATH [--model ...] [--host 127.0.0.1] [--port 8000]

A NAME is a reward model registered in the workspace's store (e.g. rm-helpful-iter-001);
anything else is a saved model folder. The bearer token comes from RLHF_REWARD_TOKEN or
--token-file; the server refuses to start without one and never prints it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from rlhf.core.errors import UserError

app = typer.Typer(no_args_is_help=True, help="Reward models: serve them over HTTP.")
err = Console(stderr=True)
TOKEN_ENV = "RLHF_REWARD_TOKEN"


def read_token(token_file: Path | None) -> str:
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as e:
            raise UserError(f"--token-file {token_file}: {e.strerror or e}") from None
        if not token:
            raise UserError(f"--token-file {token_file} is empty")
        return token
    from reward.client import env_token

    token = env_token()
    if not token:
        raise UserError(f"the reward API needs a bearer token: set {TOKEN_ENV} or pass --token-file FILE")
    return token


def resolve_models(names: list[str], workspace: Path) -> list[tuple[str, str]]:
    """(served name, path) for each --model: a registered reward model's name, else a folder."""
    from rlhf.core.models import locate

    registered = registered_reward_models(workspace) if (workspace / "rlhf.yaml").exists() else {}
    out: list[tuple[str, str]] = []
    for name in names:
        if name in registered:
            out.append((name, registered[name]))
            continue
        path = locate(name, workspace)
        out.append((Path(path).name if Path(path).exists() else name, path))
    served = [n for n, _ in out]
    dupes = sorted({n for n in served if served.count(n) > 1})
    if dupes:
        raise UserError(f"two --model values would be served under the same name: {', '.join(dupes)}")
    return out


def registered_reward_models(workspace: Path) -> dict[str, str]:
    """Name -> path of each reward model registered in the workspace's store.

    Opened as every command opens it: a team's PostgreSQL store (RLHF_DATABASE_URL) has no
    rlhf.db file beside rlhf.yaml, and its names must resolve all the same.
    """
    from sqlalchemy import select

    from rlhf.core import schema
    from rlhf.pipeline.project import Project

    with Project.open(workspace) as project, project.store.session(readonly=True) as s:
        return {m.name: str(project.ws.resolve(m.path))
                for m in s.scalars(select(schema.Model).where(schema.Model.kind == "reward"))}


def check_port(host: str, port: int) -> None:
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
            # As uvicorn binds: a port whose last server just stopped (its connections in
            # TIME-WAIT or FIN-WAIT-2) is free to listen on; one that a server listens on is not.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


@app.command()
def serve(
    model: Annotated[list[str], typer.Option("--model", help="Registered reward-model name or model folder (repeatable; "
                                             "the first is the default).")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    token_file: Annotated[Path | None, typer.Option(help=f"File holding the bearer token (default: ${TOKEN_ENV}).")] = None,
    workspace: Annotated[Path, typer.Option("--workspace", "-w", envvar="RLHF_WORKSPACE",
                                            help="Workspace whose registered models NAME refers to.")] = Path("."),
    max_batch_size: Annotated[int, typer.Option(min=1, help="Inputs per forward pass (1 = no batching).")] = 32,
    max_wait_ms: Annotated[float, typer.Option(min=0, help="How long a batch waits for more inputs.")] = 5.0,
    max_queue: Annotated[int, typer.Option(min=1, help="Inputs accepted and not yet scored (per model) before requests get 429.")] = 1024,
    max_tokens: Annotated[int, typer.Option(min=1, help="Longest input in tokens (longer: 413).")] = 1024,
    max_inputs: Annotated[int, typer.Option(min=1, help="Inputs per request (more: 413); at most --max-queue.")] = 256,
    threads: Annotated[int, typer.Option(min=0, help="torch threads (0 = all cores).")] = 0,
    access_log: Annotated[bool, typer.Option(help="Log every request line.")] = False,
    worker_process: Annotated[bool, typer.Option(help="Run forward passes in a child process (not under the "
                                                 "event loop's GIL).")] = True,
) -> None:
    """Serve reward models over HTTP (POST /v1/score, POST /get_reward, /healthz, /metrics, /docs)."""
    import uvicorn

    from reward.batching import BatchSettings
    from reward.one_write import OneWriteProtocol
    from rlhf.core.models import set_threads

    token = read_token(token_file)
    trust, dtype = False, "float32"
    if (workspace / "rlhf.yaml").exists():
        cfg = workspace_config(workspace)
        trust, dtype = cfg.model.trust_remote_code, cfg.model.dtype
    targets = resolve_models(model, workspace)
    check_port(host, port)
    set_threads(threads or os.cpu_count() or 1)
    from reward.server import ServerSettings, create_app, load_model
    from reward.worker import ForwardProcess, ModelSpec, WorkerError, freeze_heap

    loaded = [load_model(name, path, trust, dtype, weights=not worker_process) for name, path in targets]
    settings = ServerSettings(token=token, max_tokens=max_tokens, max_inputs=max_inputs,
                              batch=BatchSettings(max_batch_size=max_batch_size, max_wait_ms=max_wait_ms,
                                                  max_queue=max_queue))
    worker = None
    if worker_process:
        try:
            worker = ForwardProcess([ModelSpec(n, p, trust, dtype) for n, p in targets], threads, settings.batch)
        except WorkerError as e:
            raise UserError(str(e)) from None
    api = create_app(loaded, settings, dispatcher=worker)
    freeze_heap()  # the server process only lives to serve: keep its start-up heap out of the GC's walks
    where = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    err.print(f"serving {', '.join(n for n, _ in targets)} on {where} (OpenAPI: {where}/docs)")
    try:
        uvicorn.run(api, host=host, port=port, log_level="warning", access_log=access_log, http=OneWriteProtocol)
    finally:
        if worker is not None:
            worker.close()


def workspace_config(workspace: Path):
    from rlhf.pipeline.project import Project

    return Project.open(workspace).cfg
