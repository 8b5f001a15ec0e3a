"""Reservation round trip through the whole local stack, against the direct floor.

    .venv/bin/python benchmarks/reservation_roundtrip.py [--smoke] [--levels 1 10 50] [--per-level-s 30]
        [--in-process]

Stack: HTTP POST /api/ocpp/reservations to the local API -> authorizer + reservations
function -> command record (DynamoDB Local) + SendMessage (SQS server) -> the gateway's
long poll -> ReserveNow to a simulated charger that answers at once -> outcome written ->
the function, polling the record, answers. Each concurrent client owns one charger and
alternates reserve and cancel on its port (a reserved port would refuse the next
reserve), so requests never queue behind one charger. Latency is the client's, per
request.

By default the pieces run as deployed, each in its own process (``stack.ProcessStack``):
the gateway, the local API (its functions in threads) and the chargers; the clients are
threads of this process. The per-hop medians come from the command's own timestamps
(``created_at``, ``outcome.completed_at``), the gateway's "command completed" log line
(the outcome write returned) and the charger process's receipt stamps, and the
functions' DynamoDB / SQS requests are counted in the local API's process.
``--in-process`` runs everything in this process instead (``stack.FullStack``, one GIL)
with probes wrapped around the gateway's command runner.

Floor: the same ReserveNow, from an ``ocpp``-library CSMS over an already-open socket to
the same simulated charger code, at the same concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import os
import statistics
import threading
import time
from contextlib import ExitStack
from typing import Any

from common import LOG_DIR, REPO_ROOT, Report, ratio, summarize_ms
from stack import PASSWORD, FullStack, Hops, LoopThread, ProcessStack, Timeline, install_hop_probes

ID_TAG = "BENCHTAG01"
MOTO_NOTE = (
    "the clients are a closed loop: each waits for its answer, so at N concurrent p50 is about N / requests per "
    "second, and the rate is set by the CPU the whole stack needs per request (the cpu_* columns; 2 shared cores). "
    "The local SQS server (moto) serves ~100 send+receive+delete cycles/s (benchmarks/sqs_candidates.py). Real "
    "SQS/DynamoDB cost this machine no CPU but are farther away (same-region RTT ~1-5 ms)."
)


HOPS_PROCESSES = (
    "hops (p50, ms): api_to_command = HTTP in -> authorizer -> function builds the command (created_at); "
    "command_to_charger = command record write + SendMessage + the gateway's long-poll wake + ReserveNow out "
    "(the charger process's receipt stamp); charger_to_gateway = the charger's answer back until the gateway "
    "completes the outcome (completed_at); outcome_store = the outcome write (the gateway's 'command completed' log "
    "line, ms); store_to_answer = the function's next poll of the record + HTTP out. Gateway, local API, chargers "
    "and this client are separate processes; polls_per_request = the functions' GetItem on the commands table per "
    "request (reserve and cancel), counted in the local API's process; cpu_* = each process's CPU over the level, "
    "% of one core (2 cores = 200%)."
)
HOPS_IN_PROCESS = (
    "hops (p50, ms): api_to_command = HTTP in -> authorizer -> function builds the command; command_to_gateway = "
    "command record write + SendMessage + long-poll wake; gateway_charger = ReserveNow to the simulated charger "
    "and its answer; outcome_store = outcome write; store_to_answer = the function's polling of the record + "
    "HTTP out. All pieces share this process (one GIL)."
)


def expiry() -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- through the stack -------------------------------------------------------------------


def run_stack_level(
    stack: Any, hops: Hops | None, concurrency: int, seconds: float, max_per_worker: int, next_id: list[int]
) -> dict[str, Any]:
    import httpx

    lock = threading.Lock()
    samples: list[tuple[str, int, float, float, str]] = []  # (ocppId, reservationId, start, end, status)
    cancels: list[float] = []
    errors: list[str] = []
    stop_at = time.monotonic() + seconds

    def worker(charger: Any) -> None:
        headers = {"Authorization": f"Bearer {stack.api_key}"}
        with httpx.Client(base_url=stack.api_url, headers=headers, timeout=35) as client:
            for _ in range(max_per_worker):
                if time.monotonic() >= stop_at:
                    return
                with lock:
                    rid = next_id[0]
                    next_id[0] += 1
                body = {"portId": charger.port_id, "expiryDate": expiry(), "idTag": ID_TAG, "reservationId": rid}
                t0 = time.time()
                response = client.post("/api/ocpp/reservations", json=body)
                t1 = time.time()
                status = (
                    response.json().get("data", {}).get("status")
                    if response.status_code == 200
                    else f"HTTP {response.status_code}"
                )
                with lock:
                    samples.append((charger.ocpp_id, rid, t0, t1, str(status)))
                    if status != "Accepted":
                        errors.append(f"reserve {charger.ocpp_id}/{rid}: {status} {response.text[:200]}")
                c0 = time.time()
                response = client.post(
                    "/api/ocpp/reservations/cancel", json={"chargerId": charger.charger_id, "reservationId": rid}
                )
                with lock:
                    cancels.append((time.time() - c0) * 1000)
                    if response.status_code != 200:
                        errors.append(
                            f"cancel {charger.ocpp_id}/{rid}: HTTP {response.status_code} {response.text[:200]}"
                        )

    threads = [threading.Thread(target=worker, args=(c,)) for c in stack.chargers[:concurrency]]
    t_start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 120)
    wall = time.monotonic() - t_start
    time.sleep(0.2)  # the last outcome-stored probes trail the answers by a write
    latencies = [(end - start) * 1000 for _, _, start, end, _ in samples]
    breakdown = _timeline_breakdown(stack.timelines(), samples) if hops is None else _probe_breakdown(hops, samples)
    return {
        "latency": summarize_ms(latencies),
        "cancel": summarize_ms(cancels),
        # Each worker also cancels: a reservation cycle is two commands.
        "reservations_per_s": round(len(samples) / wall, 1) if wall else None,
        "breakdown_p50_ms": {k: round(statistics.median(v), 1) if v else None for k, v in breakdown.items()},
        "errors": errors[:5],
        "error_count": len(errors),
        "requests": len(samples) + len(cancels),
    }


#: Hops through the processes, from the instants the pieces record (see the module docstring).
TIMELINE_HOPS = ("api_to_command", "command_to_charger", "charger_to_gateway", "outcome_store", "store_to_answer")
#: Hops with probes inside the gateway (``--in-process``).
PROBE_HOPS = ("api_to_command", "command_to_gateway", "gateway_charger", "outcome_store", "store_to_answer")


def _timeline_breakdown(
    timelines: dict[tuple[str, str, int], Timeline], samples: list[tuple[str, int, float, float, str]]
) -> dict[str, list[float]]:
    breakdown: dict[str, list[float]] = {k: [] for k in TIMELINE_HOPS}
    for ocpp_id, rid, start, end, _ in samples:
        t = timelines.get((ocpp_id, "ReserveNow", rid))
        if t is None or t.completed is None or t.at_charger is None or t.stored is None:
            continue
        breakdown["api_to_command"].append((t.created - start) * 1000)
        breakdown["command_to_charger"].append((t.at_charger - t.created) * 1000)
        breakdown["charger_to_gateway"].append((t.completed - t.at_charger) * 1000)
        breakdown["outcome_store"].append((t.stored - t.completed) * 1000)
        breakdown["store_to_answer"].append((end - t.stored) * 1000)
    return breakdown


def _probe_breakdown(hops: Hops, samples: list[tuple[str, int, float, float, str]]) -> dict[str, list[float]]:
    breakdown: dict[str, list[float]] = {k: [] for k in PROBE_HOPS}
    for ocpp_id, rid, start, end, _ in samples:
        cid = hops.key.get((ocpp_id, "ReserveNow", rid))
        if cid is None or not all(cid in d for d in (hops.created, hops.received, hops.charger_ms, hops.stored)):
            continue
        breakdown["api_to_command"].append((hops.created[cid] - start) * 1000)
        breakdown["command_to_gateway"].append((hops.received[cid] - hops.created[cid]) * 1000)
        breakdown["gateway_charger"].append(hops.charger_ms[cid])
        breakdown["outcome_store"].append((hops.stored[cid] - hops.completed[cid]) * 1000)
        breakdown["store_to_answer"].append((end - hops.stored[cid]) * 1000)
    return breakdown


# --- the floor -------------------------------------------------------------------------


class FloorCsms:
    """A minimal ``ocpp``-library CSMS; ``reserve`` times ReserveNow over the open socket."""

    def __init__(self) -> None:
        self.points: dict[str, Any] = {}
        self.port = 0

    async def start(self) -> None:
        import ocpp.messages
        from ocpp.routing import on
        from ocpp.v16 import ChargePoint, call_result
        from websockets.asyncio.server import serve

        ocpp.messages.ASYNC_VALIDATION = False  # as the gateway does: no thread hop per frame

        def now() -> str:
            return dt.datetime.now(dt.UTC).isoformat()

        class Point(ChargePoint):  # type: ignore[misc]
            @on("BootNotification")
            def boot(self, **kwargs: Any) -> Any:
                return call_result.BootNotification(current_time=now(), interval=300, status="Accepted")

            @on("StatusNotification")
            def status(self, **kwargs: Any) -> Any:
                return call_result.StatusNotification()

            @on("Heartbeat")
            def heartbeat(self, **kwargs: Any) -> Any:
                return call_result.Heartbeat(current_time=now())

        async def handler(websocket: Any) -> None:
            ocpp_id = websocket.request.path.rsplit("/", 1)[-1]
            point = Point(ocpp_id, websocket)
            self.points[ocpp_id] = point
            try:
                await point.start()
            except Exception:
                self.points.pop(ocpp_id, None)

        self.server = await serve(handler, "127.0.0.1", 0, subprotocols=["ocpp1.6"])  # type: ignore[list-item]
        self.port = self.server.sockets[0].getsockname()[1]

    async def cycle(self, ocpp_id: str, rid: int) -> tuple[float, str]:
        from ocpp.v16 import call

        point = self.points[ocpp_id]
        t0 = time.perf_counter()
        result = await point.call(
            call.ReserveNow(connector_id=1, expiry_date=expiry(), id_tag=ID_TAG, reservation_id=rid), suppress=False
        )
        elapsed = (time.perf_counter() - t0) * 1000
        await point.call(call.CancelReservation(reservation_id=rid), suppress=False)
        return elapsed, str(result.status)

    async def level(self, ids: list[str], seconds: float, max_per_worker: int) -> dict[str, Any]:
        samples: list[float] = []
        statuses: list[str] = []
        stop_at = time.monotonic() + seconds
        counter = iter(range(1, 10**9))

        async def worker(ocpp_id: str) -> None:
            for _ in range(max_per_worker):
                if time.monotonic() >= stop_at:
                    return
                elapsed, status = await self.cycle(ocpp_id, next(counter))
                samples.append(elapsed)
                statuses.append(status)

        t0 = time.monotonic()
        await asyncio.gather(*(worker(i) for i in ids))
        wall = time.monotonic() - t0
        bad = [s for s in statuses if s != "Accepted"]
        return {
            "latency": summarize_ms(samples),
            "reservations_per_s": round(len(samples) / wall, 1),
            "errors": bad[:5],
        }


def run_floor(levels: list[int], seconds: float, max_per_worker: int) -> dict[int, dict[str, Any]]:
    from simulator import Fleet, SimulatedCharger

    # Stopping the fleet leaves the chargers' own pending CALLs failed on closed sockets;
    # asyncio reports each as "never retrieved", which is noise here.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    csms_loop, charger_loop = LoopThread("floor-csms"), LoopThread("floor-chargers")
    try:
        csms = FloorCsms()
        csms_loop.run(csms.start())
        ids = [f"FLOOR-{n}" for n in range(1, max(levels) + 1)]

        async def fleet_up() -> Any:
            fleet = Fleet(
                SimulatedCharger(i, f"ws://127.0.0.1:{csms.port}/ocpp", password=PASSWORD, ports=1) for i in ids
            )
            await fleet.start()
            await fleet.wait_connected(60)
            return fleet

        fleet = charger_loop.run(fleet_up())
        deadline = time.monotonic() + 30
        while len(csms.points) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        results = {c: csms_loop.run(csms.level(ids[:c], seconds, max_per_worker), seconds + 120) for c in levels}
        charger_loop.run(fleet.stop())
        csms.server.close()
        return results
    finally:
        csms_loop.close()
        charger_loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="1 and 2 concurrent, two reservations each")
    parser.add_argument("--levels", type=int, nargs="*", default=[1, 10, 50])
    parser.add_argument("--per-level-s", type=float, default=30.0, help="time bound per concurrency level")
    parser.add_argument("--per-worker", type=int, default=40, help="reservations per concurrent client at most")
    parser.add_argument(
        "--in-process", action="store_true", help="the whole stack in this process (one GIL), probed inside the gateway"
    )
    parser.add_argument(
        "--poll-schedule",
        type=lambda text: [float(x) for x in text.split(",")],
        help="the functions' pauses between polls (s, comma-separated) instead of POLL_SCHEDULE_S, the first one fixed",
    )
    parser.add_argument(
        "--api-processes",
        type=int,
        default=1,
        help="local API processes sharing its port (the kernel spreads the clients' connections)",
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the direct-socket floor (quicker experiments)")
    args = parser.parse_args()
    levels = [1, 2] if args.smoke else args.levels
    seconds, per_worker = (5.0, 2) if args.smoke else (args.per_level_s, args.per_worker)
    #: concurrency -> (functions, gateway) CPU ms per reservation
    own_cpu: dict[int, tuple[float, float]] = {}
    report = Report("reservation_roundtrip", smoke=args.smoke)
    report.notes.append(MOTO_NOTE)
    report.notes.append(HOPS_IN_PROCESS if args.in_process else HOPS_PROCESSES)

    floor = {} if args.no_floor else run_floor(levels, seconds, per_worker)
    for c, f in floor.items():
        report.add(path="floor (direct socket)", concurrent=c, **_row(f))

    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack_cm, (LOG_DIR / "reservation_roundtrip-functions.log").open("w") as function_log:
        # The functions print their metrics (EMF) to stdout; this script's stdout is its report.
        stack_cm.enter_context(contextlib.redirect_stdout(function_log))
        hops: Hops | None = None
        stack: FullStack | ProcessStack
        if args.in_process:
            stack = FullStack(max(levels)).start(stack_cm)
            hops = Hops()
            install_hop_probes(hops)
        else:
            stack = ProcessStack(max(levels), poll_schedule=args.poll_schedule, api_processes=args.api_processes).start(
                stack_cm
            )
        if stack.problem:
            report.todo.append(f"stack not measured: {stack.problem}")
        else:
            path = "stack in one process" if args.in_process else "stack (HTTP -> charger -> HTTP)"
            next_id = [1000]
            # Warm: every client's function instances started, the authorizer's cache filled
            # (in each local API process), as in a service that has been running a while.
            run_stack_level(stack, hops, max(levels), 30, 1, next_id)
            if isinstance(stack, ProcessStack):
                report.notes.append(f"after the warm-up the stack was idle in {_wait_idle(stack):.1f} s")
            for c in levels:
                if isinstance(stack, ProcessStack):
                    stack.function_requests()  # what came before this level
                    cpu_before, wall_before = stack.cpu_seconds(), time.monotonic()
                result = run_stack_level(stack, hops, c, seconds, per_worker, next_id)
                row = report.add(path=path, concurrent=c, **_row(result))
                row["cancel_p50_ms"] = result["cancel"]["p50_ms"]
                row.update({f"{k}_ms": v for k, v in result["breakdown_p50_ms"].items()})
                if isinstance(stack, ProcessStack):
                    row["polls_per_request"] = _polls_per_request(stack.function_requests(), result["requests"])
                    wall = time.monotonic() - wall_before
                    cpu_after = stack.cpu_seconds()
                    for name, used in cpu_after.items():
                        row[f"cpu_{name.replace(' ', '_')}"] = round(100 * (used - cpu_before.get(name, used)) / wall)
                    # Ours per reservation (each round is a reserve and a cancel): the handlers'
                    # thread CPU in the local API, and the gateway process's CPU (the idle
                    # chargers' heartbeats included, a small share), stand-ins excluded.
                    reservations = max(1, result["requests"] // 2)
                    functions_ms = sum(stack.last_function_cpu_ms.values())
                    gateway_s = cpu_after.get("gateway", 0.0) - cpu_before.get("gateway", 0.0)
                    row["functions_cpu_ms_per_reservation"] = round(functions_ms / reservations, 2)
                    row["gateway_cpu_ms_per_reservation"] = round(1000 * gateway_s / reservations, 2)
                    own_cpu[c] = (row["functions_cpu_ms_per_reservation"], row["gateway_cpu_ms_per_reservation"])
                    split = {f: round(ms / reservations, 2) for f, ms in sorted(stack.last_function_cpu_ms.items())}
                    report.notes.append(f"c={c}: handler CPU ms per reservation by function: {split}")
                if result["errors"]:
                    report.notes.append(f"stack c={c}: {result['error_count']} errors, e.g. {result['errors']}"[:600])
                f = floor.get(c)
                if f:
                    over50 = row["p50_ms"] - f["latency"]["p50_ms"]
                    over99 = row["p99_ms"] - f["latency"]["p99_ms"]
                    row["over_floor_p50_ms"], row["over_floor_p99_ms"] = round(over50, 1), round(over99, 1)
                    report.ratios[f"stack/floor p50 at {c}"] = ratio(row["p50_ms"], f["latency"]["p50_ms"])
    low = min(levels)
    if low in own_cpu:
        functions_ms, gateway_ms = own_cpu[low]
        report.target(f"functions' CPU ms per reservation at {low} concurrent", functions_ms, 5, at_least=False)
        report.target(f"gateway CPU ms per reservation at {low} concurrent", gateway_ms, 1, at_least=False)
    top = max(levels)
    row = next((r for r in report.results if r["path"] != "floor (direct socket)" and r["concurrent"] == top), None)
    report.target(
        f"overhead over floor p50 ms at {top} concurrent", row and row.get("over_floor_p50_ms"), 25, at_least=False
    )
    report.target(
        f"overhead over floor p99 ms at {top} concurrent", row and row.get("over_floor_p99_ms"), 100, at_least=False
    )
    report.emit()


def _polls_per_request(counts: Any, requests: int) -> float | None:
    """The functions' GetItem on the commands table (their polls for the outcome) per API request."""
    polls = sum(n for (who, _, op), n in counts.items() if who == "function" and op.startswith("GetItem (commands"))
    return round(polls / requests, 2) if requests else None


#: A stack process is idle below this share of one core, averaged over a second.
IDLE_CPU_SHARE = 0.15


def _wait_idle(stack: ProcessStack, limit_s: float = 90.0) -> float:
    """Wait until every process of the stack is idle; the seconds it took.

    The warm-up's cold starts outlast it (an invocation the local API timed out still
    runs to its end): measured from the next level, they were seconds of p99 at 1 concurrent.
    """
    started = time.monotonic()
    before = stack.cpu_seconds()
    while time.monotonic() - started < limit_s:
        time.sleep(1.0)
        now = stack.cpu_seconds()
        busiest = max((now[name] - before.get(name, now[name]) for name in now), default=0.0)
        before = now
        if busiest < IDLE_CPU_SHARE:
            break
    return time.monotonic() - started


def _row(result: dict[str, Any]) -> dict[str, Any]:
    lat = result["latency"]
    return {
        "n": lat["n"],
        "p50_ms": lat["p50_ms"],
        "p99_ms": lat["p99_ms"],
        "max_ms": lat["max_ms"],
        "per_s": result["reservations_per_s"],
    }


if __name__ == "__main__":
    os.chdir(REPO_ROOT)
    main()
