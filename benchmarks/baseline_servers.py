"""The Python baselines the gateway is measured against, one per process.

    python benchmarks/baseline_servers.py echo  --port 9001 [--uvloop] [--compression]
    python benchmarks/baseline_servers.py echo-picows --port 9003 [--uvloop]
    python benchmarks/baseline_servers.py naive --port 9002 [--uvloop]

``echo``: a bare ``websockets`` server sending every frame back: the physical limit of
this socket library on this event loop. ``echo-picows``: the same echo on picows'
websockets-compatible server, the library the gateway's frames go through. ``naive``: the ``ocpp`` library's own
``ChargePoint`` answering BootNotification, Heartbeat, StatusNotification and
MeterValues with no storage, written as its README shows (the design a newcomer would
ship). Both accept any path and any credentials, and exit on SIGTERM or when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import signal
import sys
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

HOST = "127.0.0.1"


async def echo(websocket: ServerConnection) -> None:
    async for message in websocket:
        await websocket.send(message)


def naive_handler() -> Any:
    from ocpp.routing import on
    from ocpp.v16 import ChargePoint, call_result

    def now() -> str:
        return dt.datetime.now(dt.UTC).isoformat()

    class NaiveCentralSystem(ChargePoint):  # type: ignore[misc]
        @on("BootNotification")
        def on_boot(self, **kwargs: Any) -> Any:
            return call_result.BootNotification(current_time=now(), interval=300, status="Accepted")

        @on("Heartbeat")
        def on_heartbeat(self, **kwargs: Any) -> Any:
            return call_result.Heartbeat(current_time=now())

        @on("StatusNotification")
        def on_status(self, **kwargs: Any) -> Any:
            return call_result.StatusNotification()

        @on("MeterValues")
        def on_meter_values(self, **kwargs: Any) -> Any:
            return call_result.MeterValues()

    async def handler(websocket: ServerConnection) -> None:
        charge_point = NaiveCentralSystem(websocket.request.path.rsplit("/", 1)[-1], websocket)
        try:
            await charge_point.start()
        except Exception:  # ConnectionClosed ends every session
            return

    return handler


async def main(args: argparse.Namespace) -> None:
    # The library logs every frame at INFO; a naive server still would not print them.
    logging.basicConfig(level=logging.WARNING)
    handler = echo if args.kind.startswith("echo") else naive_handler()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.buffer.read1(65536) or stop.set())
    if args.kind == "echo-picows":
        from picows.websockets import serve as picows_serve

        async with picows_serve(
            handler,  # type: ignore[arg-type]
            HOST,
            args.port,
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            compression=None,
            ping_interval=60,
            ping_timeout=60,
            backlog=4096,
            use_aiofastnet=False,  # as the gateway: the loop's own transports
        ):
            await stop.wait()
        return
    async with serve(
        handler,
        HOST,
        args.port,
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        compression="deflate" if args.compression else None,
        ping_interval=60,
        ping_timeout=60,
        # 10,000+ handshakes arrive at once; the default backlog (100) would drop some.
        backlog=4096,
    ):
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["echo", "echo-picows", "naive"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--compression", action="store_true", help="offer permessage-deflate (websockets' default)")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.run(main(args))
    else:
        asyncio.run(main(args))
