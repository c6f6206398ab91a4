"""Run a reward API app on 127.0.0.1 in a background thread (a real uvicorn server and socket)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

TOKEN = "test-token-0123456789"


@contextlib.contextmanager
def running(app) -> Iterator[str]:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    from reward.one_write import OneWriteProtocol

    # The protocol `rlhf reward serve` runs: the tests read the answers the CLI's server writes.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                           http=OneWriteProtocol))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    # Wait on uvicorn's own flag: it is set once the lifespan has started and the socket listens.
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
