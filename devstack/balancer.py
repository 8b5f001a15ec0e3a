"""A TCP load balancer for the local stack: what the Network Load Balancer is in AWS.

Chargers connect to one address; each new connection goes to the next gateway instance
that accepts it (round robin, skipping instances that refuse), and bytes are then piped
both ways untouched, so TLS, the WebSocket upgrade and Basic auth pass through as they
would through an NLB's TCP listener. When an instance dies, its chargers' sockets close
and their reconnects land on the survivors.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Sequence
from typing import Any

LOG = logging.getLogger("devstack.balancer")

_CHUNK = 64 * 1024


class TcpBalancer:
    """Round-robin TCP proxy on 127.0.0.1 over a changeable list of backend ports."""

    def __init__(self, backends: Sequence[int] = (), host: str = "127.0.0.1", port: int = 0) -> None:
        self._backends = list(backends)
        self._host = host
        self._port = port
        self._cycle = itertools.count()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("balancer not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def backends(self) -> list[int]:
        return list(self._backends)

    def set_backends(self, ports: Sequence[int]) -> None:
        """Replace the backend list; open connections stay where they are (like deregistration)."""
        self._backends = list(ports)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self._host, self._port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _connect_backend(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        backends = list(self._backends)
        start = next(self._cycle)
        for offset in range(len(backends)):
            port = backends[(start + offset) % len(backends)]
            try:
                return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout=2)
            except (OSError, TimeoutError):
                LOG.info("backend %s refused a connection; trying the next", port)
        return None

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        backend = await self._connect_backend()
        if backend is None:
            LOG.warning("no backend accepts connections")
            client_writer.close()
            return
        backend_reader, backend_writer = backend
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            await asyncio.gather(
                _pipe(client_reader, backend_writer),
                _pipe(backend_reader, client_writer),
            )
        finally:
            self._pipes.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        # Closing both directions when either side ends: a dead gateway must look dead
        # to its chargers at once, as an NLB resets the flows of a failed target.
        with contextlib.suppress(Exception):
            writer.close()
