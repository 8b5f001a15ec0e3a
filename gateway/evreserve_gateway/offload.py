"""Running the core's blocking (AWS, password hash) calls off the event loop."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class Offload:
    """A dedicated thread pool: ``await offload(fn, *args, **kwargs)`` runs ``fn`` on it.

    Dedicated rather than the loop's default executor, so that the ``ocpp`` library
    or other code using the default pool never queues behind slow storage calls.
    """

    def __init__(self, threads: int, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)

    async def __call__(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def shutdown(self) -> None:
        # Threads blocked in a long poll finish on their own; nothing waits for them.
        self._pool.shutdown(wait=False, cancel_futures=True)
