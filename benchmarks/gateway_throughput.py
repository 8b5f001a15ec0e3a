"""Gateway message throughput against its baselines, all measured in the same run by the same client.

    .venv/bin/python benchmarks/gateway_throughput.py [--smoke] [--with-10k] [--duration 10]

For each size (100 and 1,000 chargers; 10,000 with ``--with-10k``; 20 for 2 s with
``--smoke``) and each load (Heartbeat only; the realistic mix of MeterValues, Heartbeat and
StatusNotification), every charger sends its next CALL as soon as the previous answer
arrives (``loadgen.py``, its own process). Servers, one at a time, each in its own process:

* ``echo``      bare ``websockets`` echo server, asyncio loop: the physical limit;
* ``echo-picows`` the same echo on picows, the library the gateway's frames go through
                (run only with ``--only``);
* ``naive``     the ``ocpp`` library's ChargePoint answering with no storage;
* ``ocpp-rpc``  Node ``ocpp-rpc`` in strict mode (``benchmarks/node``);
* ``ours``      ``python -m evreserve_gateway`` against a LocalAws started here, the
                chargers registered with scrypt-hashed passwords, so every connection pays
                the real registry lookup and authentication, and StatusNotifications
                are written to DynamoDB Local.

Prints messages/s, p50/p99 latency, server CPU and client CPU per row, and the ratios
ours/echo and ours/ocpp-rpc. A row whose client CPU is near 100% was limited by the
client, not the server: read its ratio with that in mind. The chargers run on picows'
client (``--client``), ~0.4x the CPU per message of websockets': with the websockets client
every efficient server's row was set by the client's one core.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psutil
from common import BENCH_DIR, LOG_DIR, PYTHON, REPO_ROOT, Report, Server, free_port, raise_nofile, ratio, run_load

PASSWORD = "bench-password-0123456789"  # noqa: S105 (local benchmark chargers)
#: Chargers beyond this many are registered without a password: scrypt (~50 ms of CPU per
#: first connection) would make a 10,000-charger run spend minutes authenticating.
MAX_PASSWORD_CHARGERS = 1000
PREFIX = "BENCH-"
#: The message log's flush in the benchmark (deployed: 300 s).
MESSAGE_LOG_FLUSH_S = 5


def node_available() -> str | None:
    node = shutil.which("node")
    if node is None:
        return "node is not installed"
    if not (BENCH_DIR / "node_modules" / "ocpp-rpc").is_dir():
        # Installing is cheap and needs only the npm registry; `make bench` does it too.
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=BENCH_DIR,
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            return f"npm ci in benchmarks/ failed: {done.stderr.decode()[-300:]}"
    return None


class OurStack:
    """LocalAws with ``count`` registered chargers, and the gateway as ``python -m evreserve_gateway``."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.aws: Any = None
        self.problem: str | None = None

    def start(self, stack: ExitStack) -> None:
        try:
            from devstack.localaws import LocalAws
        except ImportError as exc:
            self.problem = f"devstack.localaws is not importable ({exc})"
            return
        self.aws = stack.enter_context(LocalAws(prefix="bench", log_dir=LOG_DIR / "localaws"))
        register_chargers(self.aws, self.count)

    def server(self, port: int, loop: str = "uvloop", message_log: bool = True) -> Server:
        env = {
            **self.aws.env(),
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(port),
            "INSTANCE_ID": f"bench-{port}",
            "LOG_LEVEL": "WARNING",
            # Short long polls only speed up the stop; the queue is idle here.
            "GATEWAY_QUEUE_WAIT_S": "2",
            # Each charger sends as fast as it is answered, far over a real charger's
            # budget: the per-charger limit would measure itself, not the gateway.
            "GATEWAY_CHARGER_FRAMES_PER_S": "0",
            "GATEWAY_EVENT_LOOP": loop,
            "GATEWAY_MESSAGE_LOG": "true" if message_log else "false",
            # 60 times the deployed rate of batches, so that a 10 s row includes storing
            # them (packing, BatchWriteItem), not only gathering them.
            "GATEWAY_MESSAGE_LOG_FLUSH_S": str(MESSAGE_LOG_FLUSH_S),
        }
        return Server("ours" if message_log else "ours-nolog", [PYTHON, "-m", "evreserve_gateway"], port, env=env)

    def aux_pids(self) -> list[int]:
        return [pid for pid in (self.aws.dynamodb.pid, self.aws.sqs.pid) if pid]


def register_chargers(aws: Any, count: int, *, first_password_less: int = MAX_PASSWORD_CHARGERS + 1) -> None:
    """Chargers ``BENCH-1..count`` with two ports each, written straight to the registry."""
    from evreserve.models import Charger, OcppVersion, Port, utcnow
    from evreserve.security import hash_password
    from evreserve.storage.registry import RegistryStore

    registry = RegistryStore(aws.dynamodb_client(), aws.env()["REGISTRY_TABLE"])
    # One hash for all: hashing is the registering side's cost, not the gateway's.
    password_hash = hash_password(PASSWORD)
    now = utcnow()

    def create(n: int) -> None:
        registry.create_charger(
            Charger(
                id=n,
                account_id=1,
                ocpp_id=f"{PREFIX}{n}",
                ocpp_version=OcppVersion.V16,
                password_hash=password_hash if n < first_password_less else None,
                allow_no_password=n >= first_password_less,
                ports=(Port(id=2 * n - 1, port_number=1), Port(id=2 * n, port_number=2)),
                created_at=now,
                updated_at=now,
            )
        )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(create, range(1, count + 1)))


def settle(pids: list[int], below_pct: float = 10.0, limit_s: float = 60.0) -> float:
    """Wait until ``pids`` together use under ``below_pct`` of a core; returns the seconds waited.

    Each row connects its chargers afresh: the gateway writes the last row's
    disconnections, this row's connections and each port's first status. That is a
    reconnect storm, not the steady state a row measures, so the row waits it out.
    """
    started = time.monotonic()
    processes = [psutil.Process(pid) for pid in pids if psutil.pid_exists(pid)]
    while time.monotonic() - started < limit_s:
        for process in processes:
            process.cpu_percent(None)
        time.sleep(1.0)
        if sum(process.cpu_percent(None) for process in processes) < below_pct:
            break
    return round(time.monotonic() - started, 1)


def py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Sample ``pid`` for ``seconds`` without pausing it; collapsed stacks (one line per stack) to ``out``."""
    spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    argv = [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250"]
    # --gil: only the thread holding the GIL, so threads (and the loop) waiting on I/O are
    # not counted as busy.
    argv += ["--nonblocking", "--gil", "--format", "raw", "--output", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize_profile(path: Path, top: int = 12) -> dict[str, Any]:
    """Where the samples went: the functions most often on top of the stack, and the
    gateway/library functions most often anywhere on it (inclusive), in % of samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    if not path.exists():
        return {"error": f"no profile at {path}"}
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        own[_frame(frames[-1])] += count
        for name in {_frame(f) for f in frames}:
            inclusive[name] += count

    def pct(counter: Counter[str], keep: Callable[[str], bool]) -> dict[str, float]:
        return {k: round(100 * v / total, 1) for k, v in counter.most_common() if keep(k)}

    interesting = ("evreserve", "ocpp", "websockets", "json", "jsonschema", "asyncio", "dataclasses", "logging")
    return {
        "samples": total,
        "self_pct": dict(list(pct(own, lambda k: True).items())[:top]),
        "inclusive_pct": dict(
            list(pct(inclusive, lambda k: any(m in k for m in interesting) and "run_forever" not in k).items())[:top]
        ),
        "file": str(path),
    }


def _frame(frame: str) -> str:
    """``handle (evreserve_gateway/protocol/session.py:201)`` -> ``session.py:handle``."""
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    parts = file.split("/")
    package = next((p for p in reversed(parts[:-1]) if p not in ("site-packages", "lib", "src")), "")
    return f"{package}/{parts[-1]}:{name}" if package else f"{parts[-1]}:{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="20 chargers for 2 s: checks the script, not the figures")
    parser.add_argument("--with-10k", action="store_true", help="also 10,000 chargers")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per row (after a warm-up)")
    parser.add_argument(
        "--only",
        nargs="*",
        choices=["echo", "echo-picows", "naive", "ocpp-rpc", "ours", "ours-nolog"],
        help="servers to run",
    )
    parser.add_argument("--client-asyncio", action="store_true", help="run the client on asyncio instead of uvloop")
    parser.add_argument(
        "--client",
        choices=["picows", "websockets"],
        default="picows",
        help="the chargers' WebSocket client (websockets: as before 2026-12-07; it saturates a core first)",
    )
    parser.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="event loop of ours and of the Python baselines, the same for all (ours deploys on uvloop)",
    )
    parser.add_argument("--sizes", type=int, nargs="*", help="charger counts instead of 100 and 1,000")
    parser.add_argument("--mixes", nargs="*", choices=["heartbeat", "realistic", "no-status"], help="loads to run")
    parser.add_argument("--profile", action="store_true", help="py-spy the server during each load (ours only)")
    args = parser.parse_args()

    sizes = [20] if args.smoke else args.sizes or [100, 1000] + ([10_000] if args.with_10k else [])
    # A smoke run checks that every server starts and is measured: one mix is enough.
    mixes = args.mixes or (["heartbeat"] if args.smoke else ["heartbeat", "realistic"])
    # The warm-up covers each port's first StatusNotification write (2 per charger).
    duration, warmup = (2.0, 0.5) if args.smoke else (args.duration, 5.0)
    kinds = args.only or ["echo", "naive", "ocpp-rpc", "ours", "ours-nolog"]
    raise_nofile(max(sizes) * 2 + 1024)
    report = Report("gateway_throughput", smoke=args.smoke)
    report.notes.append(
        "closed loop: each charger sends its next CALL when the previous answer arrives; latency = send to answer, "
        "at the client. realistic mix per 10 CALLs: 6 MeterValues, 3 Heartbeat, 1 StatusNotification."
    )
    report.notes.append(
        "the mix's StatusNotification repeats the port's status (Available) with a fresh timestamp: after each "
        "port's first report (written during the warm-up) the gateway stores no repeat, so the realistic row "
        "measures OCPP processing; a real status change costs one UpdateItem, at most one in flight per port"
    )
    report.notes.append(
        "STARVED: server + client CPU under 150% of the 200% this machine has and neither at a full core, i.e. the "
        "row waited for CPUs busy with something else (at 100+ chargers; a few chargers can also leave the CPUs "
        "idle by latency alone); "
        "its figures, and ratios built on them, are not to be trusted"
    )
    report.notes.append(
        "server CPU is % of one core (a Python server cannot use more than ~100%); client_cpu near 100% means the "
        "client, not the server, set the pace. aux_cpu = DynamoDB Local + SQS server, only for ours."
    )

    with ExitStack() as stack:
        ours = OurStack(max(sizes))
        if "ours" in kinds or "ours-nolog" in kinds:
            t0 = time.perf_counter()
            ours.start(stack)
            if ours.problem:
                report.todo.append(f"ours not measured: {ours.problem}")
            else:
                report.notes.append(
                    f"ours: LocalAws + {max(sizes)} chargers registered in {time.perf_counter() - t0:.1f}s; "
                    f"chargers 1..{min(max(sizes), MAX_PASSWORD_CHARGERS)} use Basic auth with scrypt hashes "
                    "(first connect of each pays one scrypt in the gateway), any beyond are password-less"
                )
        node_problem = node_available() if "ocpp-rpc" in kinds else None
        if node_problem:
            report.todo.append(f"ocpp-rpc not measured: {node_problem}")

        loop_flag = ["--uvloop"] if args.loop == "uvloop" else []
        report.notes.append(
            f"event loop: {args.loop} for ours, echo and naive alike (the same loop, as the issue asks); "
            "ocpp-rpc runs on Node's"
        )
        report.notes.append(f"chargers' client: {args.client} (every server is measured with the same client)")
        factories: dict[str, Callable[[int], Server]] = {
            "echo": lambda port: Server(
                "echo", [PYTHON, str(BENCH_DIR / "baseline_servers.py"), "echo", "--port", str(port), *loop_flag], port
            ),
            "echo-picows": lambda port: Server(
                "echo-picows",
                [PYTHON, str(BENCH_DIR / "baseline_servers.py"), "echo-picows", "--port", str(port), *loop_flag],
                port,
            ),
            "naive": lambda port: Server(
                "naive",
                [PYTHON, str(BENCH_DIR / "baseline_servers.py"), "naive", "--port", str(port), *loop_flag],
                port,
            ),
            "ocpp-rpc": lambda port: Server(
                "ocpp-rpc", ["node", str(BENCH_DIR / "node" / "ocpp_rpc_server.js"), str(port)], port
            ),
            "ours": lambda port: ours.server(port, args.loop),
            "ours-nolog": lambda port: ours.server(port, args.loop, message_log=False),
        }
        runnable = [
            k for k in kinds if not (k.startswith("ours") and ours.problem) and not (k == "ocpp-rpc" and node_problem)
        ]
        # Every server runs from the start (an idle one costs nothing) and the rows are
        # interleaved, so that a burst of load from elsewhere on this shared machine
        # hits one row of each server rather than every row of the last one.
        servers = {kind: stack.enter_context(factories[kind](free_port())) for kind in runnable}
        for size in sizes:
            for mix in mixes:
                for kind, server in servers.items():
                    port = server.port
                    config = {
                        "url": f"ws://127.0.0.1:{port}/ocpp",
                        "prefix": PREFIX,
                        "count": size,
                        "password": PASSWORD,
                        "mode": "closed",
                        "mix": mix,
                        "boot": False,
                        "warmup_s": warmup,
                        "duration_s": duration,
                        "expect": "any" if kind.startswith("echo") else "result",
                        "uvloop": not args.client_asyncio,
                        "client": args.client,
                        # Ours verifies scrypt on 4 threads: more handshakes at once would wait
                        # past the server's 10 s open timeout on a busy machine.
                        "connect_concurrency": 32,
                        "deadline_s": 900,
                    }
                    extra = ours.aux_pids() if kind.startswith("ours") else []
                    if extra and not args.smoke:
                        waited = settle([server.pid, *extra])
                        report.extra.setdefault("settled_s", {})[f"{kind} {size} {mix}"] = waited
                    profile = LOG_DIR / f"profile-{kind}-{size}-{mix}.txt"
                    spy: list[subprocess.Popen[bytes]] = []

                    def start_profile(
                        _: object,
                        pid: int = server.pid,
                        out: Path = profile,
                        spy: list[subprocess.Popen[bytes]] = spy,
                    ) -> None:
                        spy.append(py_spy(pid, warmup + duration, out))

                    figures = run_load(
                        config,
                        name=f"loadgen-{kind}-{size}-{mix}",
                        server_pid=server.pid,
                        extra_pids=extra,
                        after_connect=start_profile if args.profile and kind.startswith("ours") else None,
                    )
                    for p in spy:
                        p.wait(60)
                        report.extra.setdefault("profiles", {})[f"{kind} {size} {mix}"] = summarize_profile(profile)
                    aux = sum(v for k, v in figures.items() if k.startswith("aux") and k.endswith("_cpu_pct"))
                    server_cpu = figures.get("server_cpu_pct") or 0
                    report.add(
                        server=kind,
                        chargers=size,
                        load=mix,
                        connected=figures["connected"],
                        connect_s=figures["connect_s"],
                        msg_per_s=figures["msg_per_s"],
                        p50_ms=figures.get("p50_ms"),
                        p99_ms=figures.get("p99_ms"),
                        server_cpu=figures.get("server_cpu_pct"),
                        # Messages per second of the server's own CPU: what one message costs
                        # it, which outside load disturbs much less than msg/s.
                        msg_per_cpu_s=round(figures["msg_per_s"] * 100 / server_cpu) if server_cpu > 5 else None,
                        client_cpu=figures.get("client_cpu_pct"),
                        aux_cpu=round(aux, 1) if extra else None,
                        errors=figures.get("errors", 0) + figures.get("connect_failed", 0),
                        connect_retries=figures.get("connect_attempts_failed", 0),
                        load1=round(os.getloadavg()[0], 1),
                    )
                    # Server + client (+ stand-ins) well under the machine's 200% means the
                    # row waited for CPUs busy elsewhere: its msg/s says little.
                    # A server or client at ~a full core was bound by its own work, not starved.
                    client_cpu = figures.get("client_cpu_pct") or 0
                    used = server_cpu + client_cpu + aux
                    bound = max(server_cpu, client_cpu) >= 95
                    report.results[-1]["starved"] = "STARVED" if used < 150 and not bound else ""
                    if figures.get("unexpected") or figures.get("connect_errors"):
                        seen = (figures.get("connect_errors") or []) + figures.get("unexpected", [])
                        report.notes.append(f"{kind}/{size}/{mix}: {seen}"[:600])
                    time.sleep(1.0)  # let the server finish closing before the next row

    def rate(server: str, size: int, mix: str, figure: str = "msg_per_s") -> float | None:
        row = next((r for r in report.results if (r["server"], r["chargers"], r["load"]) == (server, size, mix)), None)
        return row[figure] if row else None

    for size in sizes:
        for mix in mixes:
            report.ratios[f"ours/echo {size} {mix}"] = ratio(rate("ours", size, mix), rate("echo", size, mix))
            report.ratios[f"ours/ocpp-rpc {size} {mix}"] = ratio(rate("ours", size, mix), rate("ocpp-rpc", size, mix))
            report.ratios[f"naive/echo {size} {mix}"] = ratio(rate("naive", size, mix), rate("echo", size, mix))
            report.ratios[f"log on/off {size} {mix}"] = ratio(rate("ours", size, mix), rate("ours-nolog", size, mix))
            report.ratios[f"log on/off per server CPU-second {size} {mix}"] = ratio(
                rate("ours", size, mix, "msg_per_cpu_s"), rate("ours-nolog", size, mix, "msg_per_cpu_s")
            )
            # Not a target: what the gateway's OCPP work costs on top of its socket library's echo.
            report.ratios[f"ours/echo-picows {size} {mix}"] = ratio(
                rate("ours", size, mix), rate("echo-picows", size, mix)
            )
            for baseline in ("echo", "echo-picows", "ocpp-rpc"):
                report.ratios[f"ours/{baseline} per server CPU-second {size} {mix}"] = ratio(
                    rate("ours", size, mix, "msg_per_cpu_s"), rate(baseline, size, mix, "msg_per_cpu_s")
                )
    report.notes.append(
        "msg_per_cpu_s = msg/s per second of the server's CPU (what a message costs the server); its ratios "
        "hold up under outside load better than msg/s, but a server that was not CPU-bound (e.g. echo when "
        "the client was at ~100%) serves fewer messages per wake-up and looks dearer per message than at its "
        "limit, which flatters ours in the ratio"
    )
    at = 20 if args.smoke else 1000

    def trusted(size: int, mix: str) -> bool:
        # Only the rows the targets compare: a starved naive row does not spoil them.
        rows = [
            r
            for r in report.results
            if (r["chargers"], r["load"]) == (size, mix) and r["server"] in ("ours", "echo", "ocpp-rpc")
        ]
        return not any(r.get("starved") for r in rows)

    ok = trusted(at, "heartbeat")
    if not ok:
        report.notes.append(f"targets not judged: a {at}-charger heartbeat row was STARVED; rerun on a quiet machine")
    # Issue 18's targets: heartbeat >= 0.9x echo and >= 1.0x ocpp-rpc; the realistic mix
    # (message log on) >= 0.8x echo.
    report.target(
        f"ours/echo at {at} chargers, heartbeat",
        report.ratios.get(f"ours/echo {at} heartbeat"),
        0.9,
        at_least=True,
        trusted=ok,
    )
    report.target(
        f"ours/ocpp-rpc at {at} chargers, heartbeat",
        report.ratios.get(f"ours/ocpp-rpc {at} heartbeat"),
        1.0,
        at_least=True,
        trusted=ok,
    )
    if "realistic" in mixes:
        report.target(
            f"ours/echo at {at} chargers, realistic",
            report.ratios.get(f"ours/echo {at} realistic"),
            0.8,
            at_least=True,
            trusted=trusted(at, "realistic"),
        )
    for baseline, limit in (("echo", 0.9), ("ocpp-rpc", 1.0)):
        # The same targets per server CPU-second: where the client, not the server, set a
        # row's pace (client_cpu ~100%), this says what a message costs each server.
        report.target(
            f"ours/{baseline} per server CPU-second at {at} chargers, heartbeat",
            report.ratios.get(f"ours/{baseline} per server CPU-second {at} heartbeat"),
            limit,
            at_least=True,
            trusted=ok,
        )
    realistic_ok = trusted(at, "realistic") and not any(
        r.get("starved")
        for r in report.results
        if (r["chargers"], r["load"], r["server"]) == (at, "realistic", "ours-nolog")
    )
    for suffix in ("", " per server CPU-second"):
        report.target(
            f"message log on/off{suffix} at {at} chargers, realistic",
            report.ratios.get(f"log on/off{suffix} {at} realistic"),
            0.9,
            at_least=True,
            trusted=realistic_ok,
        )
    report.notes.append(
        f"ours logs every CALL (OCPP message log) flushing every {MESSAGE_LOG_FLUSH_S} s (deployed: 300 s), so its "
        "rows include storing the batches in DynamoDB Local; ours-nolog is the same gateway with the log off"
    )
    report.extra["logs"] = str(LOG_DIR)
    report.emit(
        [
            "server",
            "chargers",
            "load",
            "connected",
            "connect_s",
            "msg_per_s",
            "p50_ms",
            "p99_ms",
            "server_cpu",
            "msg_per_cpu_s",
            "client_cpu",
            "aux_cpu",
            "errors",
            "connect_retries",
            "load1",
            "starved",
        ]
    )


if __name__ == "__main__":
    os.chdir(REPO_ROOT)
    main()
