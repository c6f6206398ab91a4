"""asyncio.run for tests, on a thread of its own.

Playwright's sync API (the browser tests, which may run earlier in the same pytest process)
leaves an event loop marked running on the main thread, and asyncio.run refuses to start
another there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run_isolated(coro: Coroutine[Any, Any, T]) -> T:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
