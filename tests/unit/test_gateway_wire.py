"""send_now: frames written without websockets' send context, over a real connection on 127.0.0.1."""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from evreserve_gateway.protocol.wire import send_now


async def test_frames_go_out_in_order_and_send_now_declines_what_send_must_handle():
    """On an open connection every frame is written at once and arrives in order; on a paused
    transport (its buffer over the high-water mark), a closed connection or an object that is
    not websockets' connection, send_now writes nothing and says so."""
    outcomes: dict[str, Any] = {}

    async def handler(connection: ServerConnection) -> None:
        outcomes["sent"] = [send_now(connection, f"frame {n}") for n in range(100)]
        connection.paused = True  # as pause_writing() leaves it
        outcomes["paused"] = send_now(connection, "not now")
        connection.paused = False
        await connection.send("after")
        await connection.wait_closed()
        outcomes["closed"] = send_now(connection, "too late")

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}") as client:
            received = [await asyncio.wait_for(client.recv(), 5) for _ in range(101)]
        for _ in range(100):
            if "closed" in outcomes:
                break
            await asyncio.sleep(0.01)
    assert outcomes["sent"] == [True] * 100
    assert received == [f"frame {n}" for n in range(100)] + ["after"]
    assert (outcomes["paused"], outcomes["closed"]) == (False, False)
    assert send_now(object(), "anything") is False
