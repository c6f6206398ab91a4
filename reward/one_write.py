"""A response's status line, headers and body leave in one socket write, not two.

uvicorn writes the headers when the app sends `http.response.start` and the body when it
sends `http.response.body`: two `send` calls on the socket, two TCP segments, and a client
that reads the headers before the body arrives wakes up twice. The reward API answers small
JSON bodies at over a thousand requests a second, where those two writes took 18% of the event
loop's time (py-spy, 32 clients). Here the writes an app makes within one turn of the event
loop are joined and written once at the end of the turn (`loop.call_soon`), in order; a
response whose body comes in a later turn is written in two pieces, as before.

Measured on the 2-core machine, 32 clients (benchmarks/bench_reward_api.py's load, four
alternating rounds in each of two phases of the machine's speed): dynamic batching 1.04x the
requests/s (slow phase) and 1.07x (fast phase, where it lifted the ratio to batch size 1 from
4.11x to 4.35x); the clients' CPU per request down by about a third.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _TurnWrites:
    """A transport whose writes within one event-loop turn go out as one; everything else passes through."""

    __slots__ = ("_transport", "_loop", "_pending")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._pending is None:
            self._pending = [data]
            self._loop.call_soon(self._flush)
        else:
            self._pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        # A connection the client dropped meanwhile takes no more writes (the transport would only warn).
        if pending and not self._transport.is_closing():
            self._transport.write(b"".join(pending))

    def close(self) -> None:
        # uvicorn closes right after the last body write of a `Connection: close` response.
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class OneWriteProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through `_TurnWrites` (for `uvicorn.Config(http=...)`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_TurnWrites(transport, self.loop))  # type: ignore[arg-type]
