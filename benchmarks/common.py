"""What every benchmark shares: figures out, servers up, load in a separate process.

Each script prints a plain table, then one JSON document (the last thing on stdout)::

    {"benchmark": ..., "machine": {...}, "results": [...], "ratios": {...}, "todo": [...], "notes": [...]}

The load generator (``loadgen.py``) always runs in its own process and reports its own
CPU, so a figure limited by the client rather than the server shows as such: on 2 cores
a client at ~100% CPU means the server was not the bottleneck.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
PYTHON = sys.executable
LOG_DIR = REPO_ROOT / ".cache" / "bench-logs"


# --- figures ------------------------------------------------------------------------


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: p99 of 100 samples is the 99th value)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return float(ordered[rank - 1])


def summarize_ms(samples: Sequence[float]) -> dict[str, float]:
    """p50 / p90 / p99 / max of latencies in milliseconds, rounded for printing."""
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": _round(percentile(ordered, 50)),
        "p90_ms": _round(percentile(ordered, 90)),
        "p99_ms": _round(percentile(ordered, 99)),
        "max_ms": _round(ordered[-1] if ordered else math.nan),
    }


def _round(value: float, digits: int = 2) -> float:
    return value if math.isnan(value) else round(value, digits)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


def machine() -> dict[str, Any]:
    """Where and when the figures were taken, and how busy the machine was meanwhile."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def print_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, out: IO[str] | None = None
) -> None:
    out = out or sys.stdout
    if not rows:
        print("(no rows)", file=out)
        return
    columns = list(columns or dict.fromkeys(k for row in rows for k in row))
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print(
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(columns, widths, strict=True))),
        file=out,
    )
    print("  ".join("-" * w for w in widths), file=out)
    for r in cells:
        print(
            "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True))),
            file=out,
        )


@dataclass
class Report:
    """Accumulates one script's figures; :meth:`emit` prints the table(s) and the JSON."""

    benchmark: str
    smoke: bool = False
    results: list[dict[str, Any]] = field(default_factory=list)
    ratios: dict[str, Any] = field(default_factory=dict)
    targets: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    todo: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    started: dict[str, Any] = field(default_factory=machine)

    def add(self, **row: Any) -> dict[str, Any]:
        self.results.append(row)
        return row

    def target(self, name: str, value: float | None, limit: float, *, at_least: bool, trusted: bool = True) -> None:
        """Record a target and whether this run met it (None when not measured, or not trusted)."""
        met = None if value is None or not trusted else (value >= limit if at_least else value <= limit)
        self.targets.append(
            {"target": name, "value": value, "limit": ("≥ " if at_least else "≤ ") + f"{limit:g}", "met": met}
        )

    def emit(self, columns: Sequence[str] | None = None) -> None:
        finished = machine()
        print(f"\n== {self.benchmark}{' (smoke: tiny sizes, figures meaningless)' if self.smoke else ''}")
        print(
            f"{finished['date']}  {finished['cpus']} CPUs {finished['cpu_model']}  "
            f"load before {self.started['loadavg_1_5_15']} after {finished['loadavg_1_5_15']}"
        )
        print_table(self.results, columns)
        if self.ratios:
            print()
            print_table([{"ratio": k, "value": v} for k, v in self.ratios.items()])
        if self.targets:
            print()
            print_table(self.targets)
        for note in self.notes:
            print(f"note: {note}")
        for item in self.todo:
            print(f"TODO: {item}")
        print()
        document = {
            "benchmark": self.benchmark,
            "smoke": self.smoke,
            "machine": {**finished, "loadavg_before": self.started["loadavg_1_5_15"]},
            "results": self.results,
            "ratios": self.ratios,
            "targets": self.targets,
            "notes": self.notes,
            "todo": self.todo,
            **self.extra,
        }
        print(json.dumps(document, default=str))
        sys.stdout.flush()


# --- processes ----------------------------------------------------------------------


def free_port(host: str = HOST) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def raise_nofile(wanted: int) -> int:
    """Raise this process's open-file soft limit towards ``wanted`` (children inherit it); returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    with contextlib.suppress(ValueError, OSError):
        # Root may raise the hard limit too; anyone else only up to it.
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(wanted, hard)))
        return wanted
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


class CpuWindow:
    """CPU used by a process (and its threads, optionally its children) between start() and stop()."""

    def __init__(self, pid: int, children: bool = False) -> None:
        self.process = psutil.Process(pid)
        self.children = children
        self._t0 = 0.0
        self._cpu0 = 0.0

    def _cpu(self) -> float:
        procs = [self.process, *(self.process.children(recursive=True) if self.children else [])]
        total = 0.0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def start(self) -> None:
        self._t0, self._cpu0 = time.perf_counter(), self._cpu()

    def stop(self) -> float:
        """Percent of one core used meanwhile (200 = both cores of this machine)."""
        wall = time.perf_counter() - self._t0
        return round(100 * (self._cpu() - self._cpu0) / wall, 1) if wall > 0 else math.nan

    def rss_bytes(self) -> int:
        return int(self.process.memory_info().rss)


class Server:
    """A server in a subprocess, ready once its port accepts connections (or it printed READY)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        port: int,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        ready_timeout_s: float = 60.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd or REPO_ROOT
        self.ready_timeout_s = ready_timeout_s
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), timeout=0.5):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"{self.name} did not listen on {self.port} within {self.ready_timeout_s}s; see {self.log_path}"
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- the load generator (a separate process) ----------------------------------------


class LoadGen:
    """Drives ``loadgen.py`` in a subprocess through its phases.

    The child connects (and boots, if asked), reports ``connected``, then waits for
    ``go``; it runs the load and reports ``result``; ``close`` (or EOF on its stdin, or
    its own deadline) makes it close every connection and exit. Between the phases the
    parent measures the server (RSS after connect, CPU during the load).
    """

    def __init__(self, config: Mapping[str, Any], *, name: str = "loadgen") -> None:
        self.config = dict(config)
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{name}.log"
        self.proc: subprocess.Popen[str] | None = None
        self.cpu: CpuWindow | None = None

    def start(self) -> LoadGen:
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [PYTHON, str(BENCH_DIR / "loadgen.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=REPO_ROOT,
        )
        self.cpu = CpuWindow(self.proc.pid)
        self._send(self.config)
        return self

    def _send(self, message: Any) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def _expect(self, event: str, timeout_s: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout_s)
        if not result or not result[0]:
            self.stop()
            raise RuntimeError(f"load generator gave no {event!r} within {timeout_s:.0f}s; see {self.log_path}")
        message: dict[str, Any] = json.loads(result[0])
        if message.get("event") != event:
            raise RuntimeError(f"load generator said {message}, expected {event!r}")
        return message

    def connected(self, timeout_s: float = 600) -> dict[str, Any]:
        return self._expect("connected", timeout_s)

    def next_step(self, timeout_s: float = 1800) -> dict[str, Any]:
        """Connect the next stage of ``steps``; returns its ``connected`` report."""
        self._send({"command": "next"})
        return self._expect("connected", timeout_s)

    def go(self, timeout_s: float) -> dict[str, Any]:
        """Run the load phase; returns the child's figures with its CPU over the phase."""
        self._send({"command": "go"})
        return self._expect("result", timeout_s)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self._send({"command": "close"})
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()

    def __enter__(self) -> LoadGen:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_load(
    config: Mapping[str, Any],
    *,
    name: str,
    server_pid: int | None,
    extra_pids: Iterable[int] = (),
    after_connect: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Connect, run one load phase while sampling the server's CPU, disconnect; the merged figures.

    ``after_connect(report)`` runs after each connect stage (``config["steps"]``), with no
    load running: the place to read the server's RSS.
    """
    with LoadGen(config, name=name) as gen:
        connect_timeout = float(config.get("connect_timeout_s", 1800))
        connected = gen.connected(timeout_s=connect_timeout)
        stages = len([n for n in config.get("steps", []) if 0 < n < int(config.get("count", 0))])
        for _ in range(stages):
            if after_connect is not None:
                after_connect(connected)
            connected = gen.next_step(connect_timeout)
        if after_connect is not None:
            after_connect(connected)
        windows = {"server": CpuWindow(server_pid, children=True)} if server_pid else {}
        windows |= {f"aux{i}": CpuWindow(pid) for i, pid in enumerate(extra_pids)}
        for w in windows.values():
            w.start()
        result = gen.go(timeout_s=float(config["duration_s"]) + float(config.get("warmup_s", 0)) + 120)
        cpu = {name: w.stop() for name, w in windows.items()}
    return {**connected, **result, **{f"{k}_cpu_pct": v for k, v in cpu.items()}}


@contextlib.contextmanager
def chdir_repo() -> Iterator[None]:
    old = Path.cwd()
    os.chdir(REPO_ROOT)
    try:
        yield
    finally:
        os.chdir(old)
