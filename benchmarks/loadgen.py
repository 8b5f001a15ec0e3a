"""The load generator: many OCPP 1.6 chargers over WebSockets, in a process of its own.

Driven by ``common.LoadGen`` over stdin/stdout, one JSON document per line:

1. reads its configuration (the first line), connects every charger (and boots it:
   BootNotification, then StatusNotification per port, if ``boot``), prints
   ``{"event": "connected", ...}``;
2. on ``{"command": "go"}`` runs the load for ``warmup_s + duration_s`` and prints
   ``{"event": "result", ...}`` with messages/s, latency percentiles and its own CPU;
3. on ``{"command": "close"}``, EOF, or its own deadline, closes every connection and exits.

Two load shapes:

* ``closed``: every charger sends its next CALL as soon as the previous answer arrives
  (the throughput test). ``mix`` picks the CALLs: ``heartbeat`` only, or ``realistic``
  (per 10 CALLs: 6 MeterValues, 3 Heartbeat, 1 StatusNotification; each charger starts at
  another point of the cycle so the mix holds at every instant).
* ``paced``: every charger sends Heartbeat every ``interval_s`` from a random phase (idle
  chargers, the memory test); latency is what is measured.

``client``: ``websockets`` (the default) or ``picows`` (picows' websockets-compatible
client, ~0.4x the CPU per message): on 2 cores the websockets client reaches a full core
before an efficient server does, and then every row measures the client.

Frames are built from preformatted strings and the timestamp is refreshed every 100 ms
by one task: the client must spend its CPU on the socket, not on ``datetime``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import math
import random
import sys
import threading
import time
from typing import Any
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

#: The client libraries, by the configuration's ``client``: (connect, InvalidStatus).
_CLIENTS: dict[str, tuple[Any, type[Exception]]] = {"websockets": (connect, InvalidStatus)}


def _client(name: str) -> tuple[Any, type[Exception]]:
    if name == "picows" and name not in _CLIENTS:
        from picows.websockets import connect as picows_connect
        from picows.websockets.exceptions import InvalidStatus as PicowsInvalidStatus

        _CLIENTS[name] = (picows_connect, PicowsInvalidStatus)
    return _CLIENTS[name]


#: Answers a charger waits out (Retry-After) and tries again, without counting a failure.
_RETRYABLE = frozenset({429, 503})

_CYCLE = ("MeterValues", "Heartbeat", "MeterValues", "MeterValues", "Heartbeat",
          "MeterValues", "StatusNotification", "MeterValues", "Heartbeat", "MeterValues")  # fmt: skip


class Clock:
    """The current OCPP timestamp string, refreshed by one task instead of per frame."""

    def __init__(self) -> None:
        self.now = self._format()

    @staticmethod
    def _format() -> str:
        return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

    async def run(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            self.now = self._format()


CLOCK = Clock()


def frame(action: str, message_id: str, port: int = 1, energy: int = 0) -> str:
    if action == "Heartbeat":
        return f'[2,"{message_id}","Heartbeat",{{}}]'
    if action == "StatusNotification":
        return (
            f'[2,"{message_id}","StatusNotification",{{"connectorId":{port},"errorCode":"NoError",'
            f'"status":"Available","timestamp":"{CLOCK.now}"}}]'
        )
    if action == "MeterValues":
        return (
            f'[2,"{message_id}","MeterValues",{{"connectorId":{port},"meterValue":[{{"timestamp":"{CLOCK.now}",'
            f'"sampledValue":[{{"value":"{energy}","measurand":"Energy.Active.Import.Register","unit":"Wh"}},'
            f'{{"value":"7360","measurand":"Power.Active.Import","unit":"W"}}]}}]}}]'
        )
    if action == "BootNotification":
        return (
            f'[2,"{message_id}","BootNotification",{{"chargePointVendor":"EvReserveBench",'
            f'"chargePointModel":"LoadGen","firmwareVersion":"1.0"}}]'
        )
    raise ValueError(action)


class Stats:
    def __init__(self) -> None:
        self.latencies_ns: list[int] = []
        self.errors = 0
        self.connect_retries = 0
        #: Handshakes the server refused with 503/429 + Retry-After (a retry after that wait).
        self.connect_refused = 0
        self.retry_after_max_s = 0.0
        self.unexpected: list[str] = []


class Charger:
    __slots__ = ("index", "ocpp_id", "ws")

    def __init__(self, index: int, ocpp_id: str) -> None:
        self.index = index
        self.ocpp_id = ocpp_id
        self.ws: ClientConnection | None = None


async def call(ws: ClientConnection, text: str, message_id: str, expect_result: bool, stats: Stats) -> int:
    t0 = time.perf_counter_ns()
    await ws.send(text)
    reply = await ws.recv()
    elapsed = time.perf_counter_ns() - t0
    if expect_result and not (isinstance(reply, str) and reply.startswith(f'[3,"{message_id}"')):
        stats.errors += 1
        if len(stats.unexpected) < 5:
            stats.unexpected.append(str(reply)[:300])
    return elapsed


async def connect_one(charger: Charger, cfg: dict[str, Any], stats: Stats, sem: asyncio.Semaphore) -> bool:
    base = cfg["url"].rstrip("/")
    password = cfg.get("password")
    uri = f"{base}/{quote(charger.ocpp_id, safe='')}"
    addrs = cfg.get("local_addrs") or []
    kwargs: dict[str, Any] = {"local_addr": (addrs[charger.index % len(addrs)], 0)} if addrs else {}
    if password:
        # The header rather than the URL's userinfo: both clients send it as given.
        token = base64.b64encode(f"{charger.ocpp_id}:{password}".encode()).decode()
        kwargs["additional_headers"] = {"Authorization": f"Basic {token}"}
    open_ws, refused = _client(cfg.get("client", "websockets"))
    # A server that cannot finish a handshake in its own open timeout (websockets:
    # 10 s) drops it; like a real charger, try again after a pause. A refusal with
    # Retry-After (a gateway shedding a connect storm) is waited out as asked, outside
    # the concurrency bound, and does not use up an attempt; ``connect_give_up_s`` bounds it.
    give_up_at = time.monotonic() + float(cfg.get("connect_give_up_s", 1800))
    attempts, failures = int(cfg.get("connect_attempts", 3)), 0
    while failures < attempts and time.monotonic() < give_up_at:
        wait = 0.0
        async with sem:
            try:
                charger.ws = await open_ws(
                    uri,
                    subprotocols=[cfg.get("subprotocol", "ocpp1.6")],  # type: ignore[list-item]
                    compression="deflate" if cfg.get("compression") else None,
                    # Real chargers ping too, but the server's pings suffice to keep the
                    # link checked; the client's CPU is better spent on the load.
                    ping_interval=None,
                    open_timeout=float(cfg.get("open_timeout_s", 120)),
                    max_queue=4,
                    **kwargs,
                )
            except refused as exc:
                retry_after = exc.response.headers.get("Retry-After", "")
                if exc.response.status_code not in _RETRYABLE or not retry_after.isdigit():
                    count_failure(charger, exc, failures, stats)
                    failures += 1
                    wait = 1.0 + random.random()
                else:
                    stats.connect_refused += 1
                    wait = float(retry_after)
                    stats.retry_after_max_s = max(stats.retry_after_max_s, wait)
            except Exception as exc:
                count_failure(charger, exc, failures, stats)
                failures += 1
                wait = 1.0 + random.random()
            # Booting inside the bound keeps it a bound on chargers connecting, as before.
            if charger.ws is not None:
                return await boot(charger, cfg, stats) if cfg.get("boot") else True
        await asyncio.sleep(wait)
    return charger.ws is not None


async def boot(charger: Charger, cfg: dict[str, Any], stats: Stats) -> bool:
    """BootNotification, then a StatusNotification per port."""
    ws = charger.ws
    assert ws is not None
    expect_result = cfg.get("expect", "result") == "result"
    try:
        await call(ws, frame("BootNotification", "b"), "b", expect_result, stats)
        for port in range(1, int(cfg.get("ports", 2)) + 1):
            await call(ws, frame("StatusNotification", f"s{port}", port), f"s{port}", expect_result, stats)
    except Exception as exc:
        stats.unexpected.append(f"boot {charger.ocpp_id}: {type(exc).__name__}: {exc}"[:300])
        return False
    return True


def count_failure(charger: Charger, exc: Exception, attempt: int, stats: Stats) -> None:
    stats.connect_retries += 1
    if len(stats.unexpected) < 5:
        stats.unexpected.append(f"connect {charger.ocpp_id} #{attempt + 1}: {type(exc).__name__}: {exc}"[:300])


async def closed_loop(charger: Charger, cfg: dict[str, Any], stats: Stats, measure_from: int, stop_at: float) -> None:
    ws = charger.ws
    assert ws is not None
    realistic = cfg.get("mix") in ("realistic", "no-status")
    # "no-status": the realistic mix with MeterValues in place of StatusNotification,
    # which isolates the cost of the storage writes a StatusNotification causes.
    no_status = cfg.get("mix") == "no-status"
    expect_result = cfg.get("expect", "result") == "result"
    i = charger.index  # the offset into the mix cycle
    latencies = stats.latencies_ns
    while time.perf_counter() < stop_at:
        i += 1
        action = _CYCLE[i % len(_CYCLE)] if realistic else "Heartbeat"
        if no_status and action == "StatusNotification":
            action = "MeterValues"
        message_id = f"{charger.index}.{i}"
        t0 = time.perf_counter_ns()
        elapsed = await call(ws, frame(action, message_id, 1 + i % 2, i), message_id, expect_result, stats)
        if t0 >= measure_from:
            latencies.append(elapsed)


async def paced_loop(charger: Charger, cfg: dict[str, Any], stats: Stats, measure_from: int, stop_at: float) -> None:
    ws = charger.ws
    assert ws is not None
    interval = float(cfg["interval_s"])
    # A random phase spreads the heartbeats evenly, as a fleet booted over hours would.
    await asyncio.sleep(random.random() * interval)
    i = 0
    while time.perf_counter() < stop_at:
        i += 1
        message_id = f"h{charger.index}.{i}"
        t0 = time.perf_counter_ns()
        elapsed = await call(
            ws, frame("Heartbeat", message_id), message_id, cfg.get("expect", "result") == "result", stats
        )
        if t0 >= measure_from:
            stats.latencies_ns.append(elapsed)
        await asyncio.sleep(max(0.0, interval - elapsed / 1e9))


def ids_of(cfg: dict[str, Any]) -> list[str]:
    if "ids" in cfg:
        return list(cfg["ids"])
    return [
        f"{cfg['prefix']}{n}" for n in range(int(cfg.get("start", 1)), int(cfg.get("start", 1)) + int(cfg["count"]))
    ]


def percentiles_ms(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)

    def pick(pct: float) -> float:
        if not ordered:
            return math.nan
        return round(ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1] / 1e6, 2)

    return {"p50_ms": pick(50), "p90_ms": pick(90), "p99_ms": pick(99), "max_ms": pick(100)}


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return math.nan


async def main(cfg: dict[str, Any], commands: asyncio.Queue[dict[str, Any]]) -> None:
    clock = asyncio.create_task(CLOCK.run())
    chargers = [Charger(i, ocpp_id) for i, ocpp_id in enumerate(ids_of(cfg))]
    stats = Stats()
    sem = asyncio.Semaphore(int(cfg.get("connect_concurrency", 200)))
    live: list[Charger] = []
    # ``steps``: cumulative counts to connect in stages, reporting after each (the parent
    # measures the server in between and answers "next"); the last stage is everyone.
    steps = [n for n in cfg.get("steps", []) if 0 < n < len(chargers)] + [len(chargers)]
    done = 0
    t0 = time.perf_counter()
    command: dict[str, Any] = {}
    for step, upto in enumerate(steps):
        batch = chargers[done:upto]
        ok = await asyncio.gather(*(connect_one(c, cfg, stats, sem) for c in batch))
        live += [c for c, good in zip(batch, ok, strict=True) if good]
        done = upto
        emit(
            {
                "event": "connected",
                "step": step,
                "chargers": done,
                "connected": len(live),
                "connect_failed": done - len(live),
                "connect_attempts_failed": stats.connect_retries,
                "connect_refused": stats.connect_refused,
                "retry_after_max_s": stats.retry_after_max_s,
                "connect_s": round(time.perf_counter() - t0, 2),
                "connect_errors": stats.unexpected[:5],
                "client_rss_mb": rss_mb(),
            }
        )
        if step < len(steps) - 1:
            command = await commands.get()
            if command.get("command") != "next":
                break
    stats = Stats()
    try:
        if not command or command.get("command") == "next":
            command = await commands.get()
        if command.get("command") == "go" and live:
            warmup, duration = float(cfg.get("warmup_s", 0)), float(cfg["duration_s"])
            start = time.perf_counter()
            measure_from = time.perf_counter_ns() + int(warmup * 1e9)
            stop_at = start + warmup + duration
            loop = paced_loop if cfg.get("mode") == "paced" else closed_loop
            tasks = [asyncio.create_task(loop(c, cfg, stats, measure_from, stop_at)) for c in live]
            await asyncio.sleep(warmup)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            done, _ = await asyncio.wait(tasks, timeout=duration + 30)
            wall = time.perf_counter() - wall0
            cpu = time.process_time() - cpu0
            failures = [t.exception() for t in done if t.exception() is not None]
            # Throughput counts the answers to CALLs sent inside the window only.
            window = min(wall, duration) or math.nan
            emit(
                {
                    "event": "result",
                    "messages": len(stats.latencies_ns),
                    "msg_per_s": round(len(stats.latencies_ns) / window, 1),
                    **percentiles_ms(stats.latencies_ns),
                    "errors": stats.errors,
                    "charger_failures": len(failures),
                    "unexpected": stats.unexpected[:5] + [repr(f)[:200] for f in failures[:3]],
                    "client_cpu_pct": round(100 * cpu / wall, 1),
                    "client_rss_mb": rss_mb(),
                }
            )
            command = await commands.get()
        else:
            emit({"event": "result", "messages": 0, "msg_per_s": 0.0, "errors": 0, "client_cpu_pct": 0.0})
            if command.get("command") == "go":
                command = await commands.get()
    finally:
        clock.cancel()
        await asyncio.gather(*(c.ws.close() for c in live if c.ws is not None), return_exceptions=True)


def read_commands(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[dict[str, Any]]) -> None:
    for line in sys.stdin:
        if line.strip():
            loop.call_soon_threadsafe(queue.put_nowait, json.loads(line))
    loop.call_soon_threadsafe(queue.put_nowait, {"command": "close"})


def run() -> None:
    cfg = json.loads(sys.stdin.readline())
    if cfg.get("uvloop"):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    async def bounded() -> None:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        threading.Thread(target=read_commands, args=(asyncio.get_running_loop(), queue), daemon=True).start()
        # Every run stops by itself, even if the parent forgets it.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(float(cfg.get("deadline_s", 1800))):
                await main(cfg, queue)

    asyncio.run(bounded())


if __name__ == "__main__":
    run()
