"""Where the OCPP message log's batches are stored from: a process of its own, or a thread.

Deployed, a process (``ProcessWriter``). Packing a batch and the AWS client's request building
are pure Python: on a thread of the gateway's process they hold the GIL the event loop
needs, and every time the loop gave the GIL up at a poll it then waited for the writer to
hand it back. At 1,000 busy chargers that cost a fifth of the gateway's throughput, of which
the writer's own CPU was a third (docs/decisions.md). A spawned process has a GIL of its
own; handing it a batch costs a pickle of its tuples of strings (C, on a thread of the
executor, not the loop).

A thread (``ThreadWriter``) serves tests that hand the gateway a store of their own (a
client that cannot be sent to another process).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol

from evreserve import aws
from evreserve.errors import DependencyUnavailable
from evreserve.settings import CoreSettings
from evreserve.storage.messages import Batch, MessageLogStore

from .offload import Offload


class LogWriter(Protocol):
    async def start(self) -> None:
        """Be ready to write (a process is started now, not on the first batch)."""

    async def put(self, batches: list[Batch]) -> list[str]:
        """Store ``batches``; the ids DynamoDB refused. ``DependencyUnavailable`` if it cannot."""

    def restart(self) -> None:
        """Give up on what is in flight (it hangs); the next ``put`` starts afresh."""

    def shutdown(self) -> None: ...


class ThreadWriter:
    """Writes on a thread of the gateway's process, with the store it is given."""

    def __init__(self, store: MessageLogStore, io: Offload) -> None:
        self.store = store
        self._io = io

    async def start(self) -> None:
        return None

    async def put(self, batches: list[Batch]) -> list[str]:
        return await self._io(self.store.put, batches)

    def restart(self) -> None:
        # A thread cannot be stopped; the hung call ends with its client's timeouts.
        return None

    def shutdown(self) -> None:
        self._io.shutdown()


# -- the writer process's side -------------------------------------------------------------

_store: MessageLogStore | None = None


def _exit_with(parent: int) -> None:
    """End this process when the gateway that started it is gone (killed, or exited without a shutdown).

    A pool's worker does not notice its parent's death by itself; left running, it would
    hold the gateway's stdout and its resource tracker open.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _open_store(settings: CoreSettings, retention_days: int, endpoint_url: str | None, parent: int) -> None:
    _exit_with(parent)
    global _store
    # The log's requests are built whole by the store: botocore's parameter walk (when
    # AWS_CLIENT=botocore) is skipped.
    client = aws.dynamodb_client(settings, validate=False, endpoint=endpoint_url)
    _store = MessageLogStore(client, settings.ocpp_messages_table, retention_days)


def _ready() -> bool:
    return _store is not None


def _put(batches: list[Batch]) -> list[str]:
    if _store is None:  # pragma: no cover - the initializer always runs first
        raise RuntimeError("the message log's store is not open")
    return _store.put(batches)


# -- the gateway's side --------------------------------------------------------------------


class ProcessWriter:
    """Writes from one spawned process; a process that died is replaced at the next batch."""

    def __init__(self, settings: CoreSettings, retention_days: int, endpoint_url: str | None = None) -> None:
        """``endpoint_url`` overrides ``AWS_ENDPOINT_URL_DYNAMODB``: tests point it at nothing."""
        self._init_args = (settings, retention_days, endpoint_url, os.getpid())
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # spawn, not fork: the gateway runs threads, and a forked child would inherit
            # their locks in whatever state they were.
            self._executor = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_open_store,
                initargs=self._init_args,
            )
        return self._executor

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool(), _ready)

    async def put(self, batches: list[Batch]) -> list[str]:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool(), _put, batches)
        except BrokenProcessPool as exc:
            self._executor = None
            raise DependencyUnavailable("the message log's writer process ended", service="DynamoDB") from exc

    def restart(self) -> None:
        self._end(kill=True)

    def shutdown(self) -> None:
        self._end(kill=False)

    def _end(self, *, kill: bool) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        # The pool's own table of processes is the only handle on its worker: a call in
        # flight cannot be cancelled (restart kills it), and a shut-down pool does not wait
        # for its worker to exit (shutdown ends it here, so nothing outlives the gateway).
        processes = list(getattr(executor, "_processes", {}).values())
        manager = getattr(executor, "_executor_manager_thread", None)
        if kill:
            for process in processes:
                process.kill()
        executor.shutdown(wait=False, cancel_futures=True)
        # The pool's manager thread reaps the worker; waiting on that thread, not on the
        # process (two threads joining one process race, and the loser sees it alive).
        if manager is not None:
            manager.join(2.0)
            if manager.is_alive():
                for process in processes:
                    process.kill()
                manager.join(1.0)
