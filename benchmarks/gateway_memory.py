"""Gateway memory per idle connected charger, and heartbeat latency while holding them.

    .venv/bin/python benchmarks/gateway_memory.py [--smoke] [--with-50k] [--chargers 10000] [--interval 60]

Per server: start it, read its RSS (``rss_boot``); connect N chargers from the load
generator (own process), each sending BootNotification and a StatusNotification per
port; wait for the server to settle and read its RSS again (``rss_connected``). The
figure is ``(rss_connected - rss_boot) / N``. Then every charger heartbeats every
``--interval`` seconds from a random phase (a fleet at rest) for ``--duration`` seconds:
p50/p99 heartbeat latency and the RSS at the end.

Servers: the bare ``websockets`` echo server without and with permessage-deflate (the
client offers it only in the ``+deflate`` row; websockets enables it by default, so
this is the decision to make deliberately), and our gateway as ``python -m
evreserve_gateway`` (compression off, its default) on a LocalAws started here.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from contextlib import ExitStack
from typing import Any

from common import BENCH_DIR, PYTHON, REPO_ROOT, CpuWindow, Report, Server, free_port, raise_nofile, ratio, run_load
from gateway_throughput import PASSWORD, PREFIX, OurStack

KIB = 1024
#: Open files a process needs besides one socket per charger (its own files, pipes, the
#: gateway's DynamoDB/SQS connection pools, the load generator's loop).
FD_MARGIN = 512


def settle_rss(pid: int, quiet_s: float, limit_s: float) -> int:
    """RSS once it stopped growing for ``quiet_s`` (background writes after boot), at most ``limit_s``."""
    window = CpuWindow(pid, children=True)
    last, stable_since, deadline = window.rss_bytes(), time.monotonic(), time.monotonic() + limit_s
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = window.rss_bytes()
        if abs(now - last) > 256 * KIB:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= quiet_s:
            break
    return window.rss_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="50 chargers, 1 s heartbeats for 3 s")
    parser.add_argument("--chargers", type=int, default=10_000)
    parser.add_argument("--sizes", type=int, nargs="*", help="charger counts instead of --chargers (and 50k)")
    parser.add_argument("--with-50k", action="store_true", help="also 50,000 chargers (needs ~2 GiB and minutes)")
    parser.add_argument("--interval", type=float, default=60.0, help="heartbeat interval, seconds")
    parser.add_argument("--duration", type=float, default=45.0, help="seconds of heartbeats measured")
    parser.add_argument("--only", nargs="*", choices=["echo", "echo+deflate", "ours"])
    parser.add_argument(
        "--connect-concurrency",
        type=int,
        default=200,
        help="chargers opening their connection at once (a refused one waits out Retry-After outside this bound)",
    )
    args = parser.parse_args()
    sizes = [50] if args.smoke else args.sizes or [args.chargers] + ([50_000] if args.with_50k else [])
    interval, duration, warmup = (1.0, 3.0, 0.0) if args.smoke else (args.interval, args.duration, 0.0)
    kinds = args.only or ["echo", "echo+deflate", "ours"]

    report = Report("gateway_memory", smoke=args.smoke)
    nofile = raise_nofile(max(sizes) + FD_MARGIN)
    report.notes.append(f"open-file soft limit raised to {nofile} for the servers and the client (inherited)")
    # One socket is one file descriptor, in the server and in the client: a size over
    # the limit would fail half-way with EMFILE after minutes of connecting.
    too_big = [n for n in sizes if n + FD_MARGIN > nofile]
    if too_big:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        report.todo.append(
            f"{', '.join(f'{n:,}' for n in too_big)} chargers not run: one gateway process needs one file descriptor "
            f"per charger (+{FD_MARGIN}), and this machine's hard limit is {hard} (setrlimit may not raise it); "
            f"the largest size that fits is {nofile - FD_MARGIN:,} (--sizes {nofile - FD_MARGIN})"
        )
        sizes = [n for n in sizes if n not in too_big]
        if not sizes:
            report.emit()
            return
    report.notes.append(
        "kib_per_charger = marginal: (RSS with all connected+booted+status'd, settled) - (RSS with the first 10% "
        "so), / the other 90%; kib_gross = (RSS all - RSS at boot) / all, which includes one-off costs. "
        "Heartbeats every "
        f"{interval:g}s from a random phase, {duration:g}s measured: latency is send->answer at the client."
    )

    with ExitStack() as stack:
        ours = OurStack(max(sizes))
        if "ours" in kinds:
            ours.start(stack)
            if ours.problem:
                report.todo.append(f"ours not measured: {ours.problem}")
        for kind in kinds:
            if kind == "ours" and ours.problem:
                continue
            for size in sizes:
                port = free_port()
                if kind == "ours":
                    server = ours.server(port)
                else:
                    argv = [PYTHON, str(BENCH_DIR / "baseline_servers.py"), "echo", "--port", str(port)]
                    server = Server(kind, argv + (["--compression"] if kind == "echo+deflate" else []), port)
                with server:
                    rss_boot = settle_rss(server.pid, quiet_s=1.0, limit_s=5.0)
                    config: dict[str, Any] = {
                        "url": f"ws://127.0.0.1:{port}/ocpp",
                        "prefix": PREFIX,
                        "count": size,
                        "password": PASSWORD,
                        "mode": "paced",
                        "interval_s": interval,
                        "boot": True,
                        "ports": 2,
                        "compression": kind == "echo+deflate",
                        "expect": "any" if kind.startswith("echo") else "result",
                        "warmup_s": warmup,
                        "duration_s": duration,
                        "uvloop": True,
                        "connect_concurrency": args.connect_concurrency,
                        # One loopback source address holds ~28k ports towards one server port.
                        "local_addrs": [f"127.0.0.{i}" for i in range(1, 2 + size // 20_000)],
                        "deadline_s": 3600,
                    }
                    # A first stage warms what is paid once (thread pools, scrypt's 16 MiB per
                    # auth thread, caches): the marginal cost per charger is measured from there.
                    first = max(1, size // 10)
                    config["steps"] = [first]
                    measured: dict[str, int] = {}

                    def after_connect(
                        stage: dict[str, Any],
                        pid: int = server.pid,
                        measured: dict[str, int] = measured,
                        size: int = size,
                    ) -> None:
                        rss = settle_rss(pid, quiet_s=3.0, limit_s=120.0)
                        if stage["chargers"] < size:
                            measured["rss_first"], measured["first"] = rss, stage["connected"]
                        else:
                            measured["rss_connected"] = rss

                    figures = run_load(
                        config, name=f"loadgen-mem-{kind}-{size}", server_pid=server.pid, after_connect=after_connect
                    )
                    rss_end = CpuWindow(server.pid, children=True).rss_bytes()
                connected = figures["connected"] or 1
                per = (measured["rss_connected"] - rss_boot) / connected / KIB
                marginal = (
                    (measured["rss_connected"] - measured["rss_first"]) / max(1, connected - measured["first"]) / KIB
                )
                report.add(
                    server=kind,
                    chargers=size,
                    connected=figures["connected"],
                    connect_s=figures["connect_s"],
                    rss_boot_mib=round(rss_boot / 2**20, 1),
                    rss_connected_mib=round(measured["rss_connected"] / 2**20, 1),
                    kib_per_charger=round(marginal, 1),
                    kib_gross=round(per, 1),
                    rss_end_mib=round(rss_end / 2**20, 1),
                    heartbeats=figures.get("messages"),
                    hb_p50_ms=figures.get("p50_ms"),
                    hb_p99_ms=figures.get("p99_ms"),
                    server_cpu=figures.get("server_cpu_pct"),
                    client_cpu=figures.get("client_cpu_pct"),
                    errors=figures.get("errors", 0) + figures.get("connect_failed", 0),
                    # Handshakes answered 503/429 + Retry-After (waited out, then connected).
                    refused=figures.get("connect_refused", 0),
                    retry_after_max_s=figures.get("retry_after_max_s", 0),
                )
                if figures.get("unexpected") or figures.get("connect_errors"):
                    report.notes.append(
                        f"{kind}/{size}: {(figures.get('connect_errors') or []) + figures.get('unexpected', [])}"[:600]
                    )

    def row(kind: str, size: int) -> dict[str, Any] | None:
        return next((r for r in report.results if r["server"] == kind and r["chargers"] == size), None)

    for size in sizes:
        o, e = row("ours", size), row("echo", size)
        report.ratios[f"ours/echo KiB per charger at {size}"] = ratio(
            o and o["kib_per_charger"], e and e["kib_per_charger"]
        )
    # The target is set at 10,000 (issue 7): a smaller size's marginal figure still carries
    # one-off costs (the first connections' allocator arenas), so judge at the largest run.
    judged = 10_000 if 10_000 in sizes else max(sizes)
    at = row("ours", judged)
    report.target(f"ours KiB per idle charger at {judged:,}", at and at["kib_per_charger"], 20, at_least=False)
    big = row("ours", 50_000)
    report.target("ours heartbeat p99 ms at 50,000", big and big["hb_p99_ms"], 50, at_least=False)
    if big is None and 50_000 not in too_big:
        report.notes.append("50,000 chargers not run (pass --with-50k)")
    report.emit()


if __name__ == "__main__":
    os.chdir(REPO_ROOT)
    main()
