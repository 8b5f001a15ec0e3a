"""The local stand-in for the Network Load Balancer spreads connections and skips dead backends."""

from __future__ import annotations

import asyncio

from devstack.balancer import TcpBalancer


async def _tagged_server(tag: bytes) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(tag)
        await writer.drain()
        await reader.read()  # hold the connection until the client leaves
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def _port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


async def _first_bytes(port: int) -> tuple[bytes, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return await asyncio.wait_for(reader.read(1), timeout=2), writer


async def test_connections_alternate_between_backends():
    """New connections go round robin over the backends."""
    a, b = await _tagged_server(b"a"), await _tagged_server(b"b")
    balancer = TcpBalancer([_port(a), _port(b)])
    await balancer.start()
    try:
        seen = []
        for _ in range(4):
            tag, writer = await _first_bytes(balancer.port)
            seen.append(tag)
            writer.close()
        assert sorted(seen) == [b"a", b"a", b"b", b"b"]
    finally:
        await balancer.stop()
        a.close()
        b.close()


async def test_dead_backend_is_skipped():
    """With one backend gone, every connection reaches the survivor."""
    a, b = await _tagged_server(b"a"), await _tagged_server(b"b")
    balancer = TcpBalancer([_port(a), _port(b)])
    await balancer.start()
    a.close()
    await a.wait_closed()
    try:
        for _ in range(3):
            tag, writer = await _first_bytes(balancer.port)
            assert tag == b"b"
            writer.close()
    finally:
        await balancer.stop()
        b.close()


async def test_backend_closing_closes_the_client():
    """When the backend drops a connection the client sees it end, as chargers must when a gateway dies."""

    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(close_at_once, "127.0.0.1", 0)
    balancer = TcpBalancer([_port(server)])
    await balancer.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", balancer.port)
        assert await asyncio.wait_for(reader.read(), timeout=2) == b""
        writer.close()
    finally:
        await balancer.stop()
        server.close()
