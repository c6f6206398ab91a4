"""One socket write per response (reward/one_write.py): joined within a turn, in order, flushed on close."""

from __future__ import annotations

import asyncio
import socket

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from reward.one_write import _TurnWrites

from .serving import running


class Recording:
    """The transport under `_TurnWrites`: records what reaches the socket."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes | None]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def close(self) -> None:
        self.calls.append(("close", None))
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str):
        return ("127.0.0.1", 1) if name == "peername" else None


async def _turn() -> None:
    # call_soon callbacks scheduled before this sleep run before it returns.
    await asyncio.sleep(0)


def test_writes_of_one_turn_leave_as_one_after_the_turn() -> None:
    async def main() -> list:
        rec = Recording()
        t = _TurnWrites(rec, asyncio.get_running_loop())
        t.write(b"HTTP/1.1 200 OK\r\n\r\n")
        t.write(memoryview(b"{}"))
        assert rec.calls == []  # nothing on the socket yet within the turn
        await _turn()
        t.write(b"next")
        await _turn()
        return rec.calls

    assert asyncio.run(main()) == [("write", b"HTTP/1.1 200 OK\r\n\r\n{}"), ("write", b"next")]


def test_close_writes_what_is_pending_first_and_other_calls_pass_through() -> None:
    async def main() -> list:
        rec = Recording()
        t = _TurnWrites(rec, asyncio.get_running_loop())
        assert t.get_extra_info("peername") == ("127.0.0.1", 1)
        t.write(b"last words")
        t.close()
        await _turn()  # the scheduled flush finds nothing left to write
        return rec.calls

    assert asyncio.run(main()) == [("write", b"last words"), ("close", None)]


def test_a_connection_closed_meanwhile_takes_no_write() -> None:
    async def main() -> list:
        rec = Recording()
        t = _TurnWrites(rec, asyncio.get_running_loop())
        t.write(b"lost")
        rec.closing = True  # the client went away within the turn
        await _turn()
        return rec.calls

    assert asyncio.run(main()) == []


def _exchange(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        got = b""
        while chunk := s.recv(65536):  # the server closes: read to the end
            got += chunk
    return got


def test_a_real_server_answers_whole_keep_alive_and_connection_close() -> None:
    async def hello(request):
        return JSONResponse({"hello": "world" * 100})

    app = Starlette(routes=[Route("/", hello)])
    with running(app) as url:
        two = _exchange(url, b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    body = b'{"hello":"' + b"world" * 100 + b'"}'
    answers = two.split(b"HTTP/1.1 200 OK\r\n")
    assert answers[0] == b"" and len(answers) == 3, two[:200]
    for a in answers[1:]:
        head, _, rest = a.partition(b"\r\n\r\n")
        assert b"content-length: %d" % len(body) in head and rest == body
    assert b"connection: close" in answers[2]
