"""Fire-and-forget work that must still be tracked: kept referenced, logged on failure, awaited at shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class Background:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(
        self, coro: Coroutine[Any, Any, Any], what: str, logger: logging.LoggerAdapter[Any] | None = None
    ) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)

        def finished(done: asyncio.Task[Any]) -> None:
            self._tasks.discard(done)
            if done.cancelled():
                return
            exc = done.exception()
            if exc is not None:
                (logger or log).error("background work failed: %s", what, exc_info=exc, extra={"work": what})

        task.add_done_callback(finished)

    async def join(self, limit_s: float) -> None:
        """Wait for what is running (not for what it spawns later); cancel what outlives ``limit_s``."""
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=limit_s)
        for task in late:
            task.cancel()
        if late:
            log.error("cancelled background work at shutdown", extra={"count": len(late)})
