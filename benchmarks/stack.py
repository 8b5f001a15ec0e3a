"""The whole local stack for the benchmarks, two ways.

:class:`ProcessStack` is the stack as deployed: LocalAws (DynamoDB Local and the SQS
server, child processes), the gateway as ``python -m evreserve_gateway`` (as ECS runs it),
the local API as ``python -m devstack.local_api`` (the functions in its threads) and the
simulated chargers in a process of their own (``python benchmarks/stack.py chargers``).
No two of them share a GIL. Per-hop times come from what each piece records anyway: the
command record (``created_at``, ``outcome.completed_at``), the gateway's "command
completed" log line (after the outcome write), and the charger process's receipt stamps.

:class:`FullStack` is everything in this process (the gateway and the chargers each on an
event loop in a thread, the local API in threads), so the benchmarks can wrap methods to
timestamp hops and count requests; the price is that the pieces share one GIL, which a
deployment would not (its figures are an upper bound on the local overheads).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from common import LOG_DIR

T = TypeVar("T")
PASSWORD = "bench-password-0123456789"  # noqa: S105 (local benchmark chargers)


class LoopThread:
    """An asyncio loop in a daemon thread; ``run(coro)`` waits for a coroutine's result from outside."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 120) -> T:
        return self.submit(coro).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@dataclass
class Hops:
    """Wall-clock instants per command id, written by the probes (any thread; dict writes are atomic)."""

    created: dict[str, float] = field(default_factory=dict)
    received: dict[str, float] = field(default_factory=dict)
    charger_ms: dict[str, float] = field(default_factory=dict)
    completed: dict[str, float] = field(default_factory=dict)
    stored: dict[str, float] = field(default_factory=dict)
    key: dict[tuple[str, str, int], str] = field(default_factory=dict)  # (ocppId, action, reservationId) -> id


def install_hop_probes(hops: Hops) -> None:
    """Wrap the gateway's command runner to timestamp each command's arrival, charger call and outcome."""
    from evreserve.channel import CommandEnvelope
    from evreserve_gateway.commands import CommandRunner

    on_message, execute, write = CommandRunner.on_message, CommandRunner._execute, CommandRunner._write

    @functools.wraps(on_message)
    def probed_on_message(self: Any, message: Any) -> None:
        now = time.time()
        try:
            command = CommandEnvelope.from_json(message.body).command
        except Exception:
            return on_message(self, message)
        hops.received.setdefault(command.command_id, now)
        hops.created[command.command_id] = command.created_at.timestamp()
        rid = command.payload.get("reservationId", command.payload.get("id"))
        hops.key[(command.ocpp_id, command.action.value, int(rid) if rid is not None else -1)] = command.command_id
        return on_message(self, message)

    @functools.wraps(execute)
    async def probed_execute(self: Any, what: Any) -> Any:
        t0 = time.perf_counter()
        outcome = await execute(self, what)
        # A probe must never change what it measures: a shape it does not know is skipped.
        with contextlib.suppress(Exception):
            # Takes the command, or (newer) its delivery record holding it.
            command_id = getattr(what, "command", what).command_id
            hops.charger_ms[command_id] = (time.perf_counter() - t0) * 1000
            hops.completed[command_id] = outcome.completed_at.timestamp()
        return outcome

    @functools.wraps(write)
    async def probed_write(self: Any, delivery: Any, outcome: Any) -> None:
        await write(self, delivery, outcome)
        with contextlib.suppress(Exception):
            hops.stored.setdefault(delivery.command.command_id, time.time())

    CommandRunner.on_message = probed_on_message  # type: ignore[method-assign]
    CommandRunner._execute = probed_execute  # type: ignore[method-assign]
    CommandRunner._write = probed_write  # type: ignore[method-assign]


@dataclass
class BenchCharger:
    ocpp_id: str
    charger_id: int
    port_id: int


class FullStack:
    """Start with ``FullStack(chargers=50).start(stack)``; ``problem`` says why it could not."""

    def __init__(self, chargers: int, prefix: str = "RT-") -> None:
        self.count = chargers
        self.prefix = prefix
        self.problem: str | None = None
        self.chargers: list[BenchCharger] = []
        self.api_url = ""
        self.api_key = ""
        self.aws: Any = None
        self.api: Any = None
        self.gateway: Any = None
        self.gw_loop: LoopThread | None = None
        self.charger_loop: LoopThread | None = None
        self.fleet: Any = None

    def start(self, stack: ExitStack) -> FullStack:
        try:
            from devstack.local_api import LocalApi
            from devstack.localaws import LocalAws
            from evreserve_gateway.bootstrap import bootstrap
            from evreserve_gateway.gateway import Gateway
            from evreserve_gateway.settings import GatewaySettings
            from simulator import Fleet, SimulatedCharger
        except ImportError as exc:
            self.problem = f"a piece of the stack is not importable: {exc}"
            return self
        self.aws = stack.enter_context(LocalAws(prefix="rt", log_dir=LOG_DIR / "fullstack"))
        saved = dict(os.environ)
        stack.callback(lambda: (os.environ.clear(), os.environ.update(saved)))
        os.environ.update(self.aws.env())
        self._accounts_and_chargers()

        self.gw_loop = LoopThread("bench-gateway")
        stack.callback(self.gw_loop.close)
        # Short long polls only bound the stop; a command still wakes the poll at once.
        settings = GatewaySettings(gateway_port=0, instance_id="bench-rt", gateway_queue_wait_s=5)  # type: ignore[call-arg]

        async def start_gateway() -> Any:
            gateway = Gateway(settings, bootstrap(settings))
            await gateway.start()
            return gateway

        self.gateway = self.gw_loop.run(start_gateway())
        stack.callback(lambda: self.gw_loop and self.gw_loop.run(self.gateway.stop(), 60))

        self.api = stack.enter_context(LocalApi(port=0, parameters=LOAD_PARAMETERS))
        self.api_url = self.api.url

        self.charger_loop = LoopThread("bench-chargers")
        stack.callback(self.charger_loop.close)

        async def start_fleet() -> Any:
            fleet = Fleet(
                SimulatedCharger(c.ocpp_id, self.gateway.url, password=PASSWORD, version="1.6", ports=1)
                for c in self.chargers
            )
            await fleet.start()
            await fleet.wait_connected(60)
            return fleet

        self.fleet = self.charger_loop.run(start_fleet(), 180)
        stack.callback(lambda: self.charger_loop and self.charger_loop.run(self.fleet.stop(), 60))
        # Connected is not yet registered: wait until the gateway holds every charger.
        deadline = time.monotonic() + 60
        while not all(self.gateway.holds(c.ocpp_id) for c in self.chargers) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # the registration writes trail the handshake
        return self

    def _accounts_and_chargers(self) -> None:
        self.api_key, self.chargers = register_chargers(self.count, self.prefix)


def register_chargers(count: int, prefix: str) -> tuple[str, list[BenchCharger]]:
    """An account with an API key and ``count`` one-port chargers ``{prefix}1``.. (needs the AWS env)."""
    from evreserve.models import OcppVersion
    from evreserve.requests import NewAccount, NewApiKey, NewCharger, NewPort
    from evreserve.services.accounts import ensure_admin_key
    from evreserve.services.bootstrap import build_services
    from evreserve.services.principal import Principal
    from evreserve.settings import CoreSettings

    services = build_services(CoreSettings())  # type: ignore[call-arg]
    admin = Principal.of(ensure_admin_key(services.account_store, "evr_bench-admin-key"))
    account = services.accounts.create_account(admin, NewAccount(name="bench"))
    issued = services.accounts.create_api_key(admin, account.id, NewApiKey(name="bench"))
    owner = Principal.of(issued.key)
    chargers = []
    for n in range(1, count + 1):
        registered = services.chargers.register(
            owner,
            NewCharger(
                ocpp_id=f"{prefix}{n}",
                ocpp_version=OcppVersion.V16,
                password=PASSWORD,
                ports=(NewPort(port_number=1),),
            ),
        )
        charger = registered.charger
        chargers.append(BenchCharger(charger.ocpp_id, charger.id, charger.ports[0].id))
    return issued.secret, chargers


# --- the stack in processes ---------------------------------------------------------------


@dataclass
class Timeline:
    """Wall-clock instants (s) of one command, from the record, the gateway's log and the charger."""

    created: float
    completed: float | None = None
    at_charger: float | None = None
    stored: float | None = None


class ProcessStack:
    """Start with ``ProcessStack(chargers=50).start(exit_stack)``; ``problem`` says why it could not.

    ``api_environment`` adds variables to the local API's functions (as ``--env-vars``
    would), e.g. to try another poll schedule without touching the code.
    """

    def __init__(
        self,
        chargers: int,
        prefix: str = "RT-",
        api_environment: dict[str, str] | None = None,
        log_dir: Path = LOG_DIR / "processstack",
        poll_schedule: list[float] | None = None,
        api_processes: int = 1,
    ) -> None:
        #: Local API processes sharing its port (SO_REUSEPORT), as Lambda runs requests apart.
        self.api_processes = api_processes
        #: Replaces ``evreserve.channel.POLL_SCHEDULE_S`` in the functions (the first pause fixed, not
        #: learnt), to compare schedules.
        self.poll_schedule = poll_schedule
        self.count = chargers
        self.prefix = prefix
        self.api_environment = dict(api_environment or {})
        self.log_dir = log_dir
        self.problem: str | None = None
        self.chargers: list[BenchCharger] = []
        self.api_url = ""
        self.api_key = ""
        self.aws: Any = None
        self.gateway: Any = None
        self.pids: dict[str, int] = {}
        self._fleet: subprocess.Popen[str] | None = None
        self._dynamodb: Any = None
        self._seen_log_bytes = 0
        self._stored: dict[str, float] = {}

    def start(self, stack: ExitStack) -> ProcessStack:
        try:
            from devstack.gateways import GatewayProcess, free_port
            from devstack.localaws import LocalAws
        except ImportError as exc:
            self.problem = f"a piece of the stack is not importable: {exc}"
            return self
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.aws = stack.enter_context(LocalAws(prefix="rtp", log_dir=self.log_dir))
        saved = dict(os.environ)
        stack.callback(lambda: (os.environ.clear(), os.environ.update(saved)))
        os.environ.update(self.aws.env())
        self._dynamodb = self.aws.dynamodb.client()
        self.api_key, self.chargers = register_chargers(self.count, self.prefix)
        env = dict(os.environ)

        # Short long polls only bound the stop; a command still wakes the poll at once.
        gateway_env = {**env, "GATEWAY_QUEUE_WAIT_S": "5", "LOG_LEVEL": "INFO"}
        gateway_log = self.log_dir / "gateway.log"
        gateway_log.unlink(missing_ok=True)
        self.gateway = GatewayProcess("bench-rtp", free_port(), gateway_log)
        self.gateway.start(gateway_env)
        stack.callback(self.gateway.stop)
        self.gateway.wait_healthy(60)
        self.pids["gateway"] = self.gateway.process.pid

        api_port = free_port()
        self._apis: list[tuple[subprocess.Popen[bytes], Path]] = []
        for n in range(self.api_processes):
            counts_file = self.log_dir / f"local-api-{n}-requests.json"
            counts_file.unlink(missing_ok=True)
            api_cmd = [sys.executable, str(Path(__file__).resolve()), "local-api", "--counts-file", str(counts_file)]
            if self.poll_schedule:
                api_cmd += ["--poll-schedule", ",".join(str(x) for x in self.poll_schedule)]
            api_cmd += ["--port", str(api_port), "--log-level", "WARNING"]
            if self.api_processes > 1:
                api_cmd.append("--reuse-port")
            for name, value in LOAD_PARAMETERS.items():
                api_cmd += ["--parameter", f"{name}={value}"]
            for name, value in self.api_environment.items():
                api_cmd += ["--env", f"{name}={value}"]
            # The functions print their metrics (EMF) to stdout: the log file takes them.
            api_log = (self.log_dir / f"local-api-{n}.log").open("w")
            stack.callback(api_log.close)
            api = subprocess.Popen(api_cmd, env=env, stdout=api_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            stack.callback(_terminate, api)
            self._apis.append((api, counts_file))
            self.pids[f"local API {n}" if n else "local API"] = api.pid
            _wait_listening("127.0.0.1", api_port, api, 60)
        self.api_url = f"http://127.0.0.1:{api_port}"

        fleet_cmd = [sys.executable, str(Path(__file__).resolve()), "chargers", "--url", self.gateway_url]
        fleet_cmd += ["--prefix", self.prefix, "--count", str(self.count)]
        fleet_log = (self.log_dir / "chargers.log").open("w")
        stack.callback(fleet_log.close)
        self._fleet = subprocess.Popen(
            fleet_cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=fleet_log, text=True
        )
        stack.callback(_close_fleet, self._fleet)
        self.pids["chargers"] = self._fleet.pid
        ready = self._fleet.stdout.readline() if self._fleet.stdout else ""
        if ready.strip() != "READY":
            self.problem = f"the chargers did not connect; see {self.log_dir / 'chargers.log'}"
            return self
        # Connected is not yet registered: wait until the gateway holds every charger.
        deadline = time.monotonic() + 60
        while self._health().get("chargers", 0) < self.count and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # the registration writes trail the handshake
        return self

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) each process of the stack has used so far; ``client`` is this one."""
        import psutil

        pids = {
            **self.pids,
            "dynamodb": getattr(self.aws.dynamodb._proc, "pid", 0),
            "sqs": getattr(self.aws.sqs._proc, "pid", 0),
            "client": os.getpid(),
        }
        out: dict[str, float] = {}
        for name, pid in pids.items():
            with contextlib.suppress(psutil.Error, ValueError):
                times = psutil.Process(pid).cpu_times()
                # Several local API processes are one piece of the stack.
                piece = "local API" if name.startswith("local API") else name
                out[piece] = out.get(piece, 0.0) + times.user + times.system
        return out

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.gateway.port}/ocpp"

    def _health(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.gateway.port}/health"
        with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(url, timeout=2) as answer:
            return dict(json.loads(answer.read()))
        return {}

    def timelines(self) -> dict[tuple[str, str, int], Timeline]:
        """Every command so far by (ocppId, action, reservationId), its instants filled in where known."""
        from evreserve.storage.items import command_from

        stamps = self._charger_stamps()
        self._read_gateway_log()
        out: dict[tuple[str, str, int], Timeline] = {}
        paginator = self._dynamodb.get_paginator("scan")
        for page in paginator.paginate(TableName=self.aws.resources["COMMANDS_TABLE"]):
            for item in page.get("Items", []):
                with contextlib.suppress(Exception):
                    command = command_from(item)
                    rid = command.payload.get("reservationId", command.payload.get("id"))
                    key = (command.ocpp_id, command.action.value, int(rid) if rid is not None else -1)
                    out[key] = Timeline(
                        created=command.created_at.timestamp(),
                        completed=command.outcome.completed_at.timestamp() if command.outcome else None,
                        at_charger=stamps.get(f"{command.ocpp_id}/{command.action.value}/{key[2]}"),
                        stored=self._stored.get(command.command_id),
                    )
        return out

    def function_requests(self) -> Counter[tuple[str, str, str]]:
        """The AWS requests the local API's functions sent since the last call (caller, service, operation).

        Also kept: the functions' handler CPU over the same span, in ``last_function_cpu_ms``.
        """
        total: Counter[tuple[str, str, str]] = Counter()
        self.last_function_cpu_ms: dict[str, float] = {}
        for api, counts_file in self._apis:
            before = counts_file.stat().st_mtime_ns if counts_file.exists() else 0
            api.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if counts_file.exists() and counts_file.stat().st_mtime_ns != before:
                    with contextlib.suppress(ValueError):
                        dumped = json.loads(counts_file.read_text())
                        for key, value in dumped.items():
                            if key.startswith("cpu_ms|function|"):
                                fid = key.rsplit("|", 1)[1]
                                self.last_function_cpu_ms[fid] = self.last_function_cpu_ms.get(fid, 0.0) + value
                            else:
                                total[tuple(key.split("|"))] += value  # type: ignore[index]
                        break
                time.sleep(0.05)
        return total

    def _charger_stamps(self) -> dict[str, float]:
        fleet = self._fleet
        if fleet is None or fleet.stdin is None or fleet.stdout is None or fleet.poll() is not None:
            return {}
        fleet.stdin.write("dump\n")
        fleet.stdin.flush()
        return dict(json.loads(fleet.stdout.readline() or "{}"))

    def _read_gateway_log(self) -> None:
        # "command completed" is logged once the outcome write returned: the stored instant (ms).
        with self.gateway.log_path.open("rb") as log:
            log.seek(self._seen_log_bytes)
            chunk = log.read()
        end = chunk.rfind(b"\n") + 1
        self._seen_log_bytes += end
        for line in chunk[:end].splitlines():
            if b"command completed" not in line:
                continue
            with contextlib.suppress(ValueError, KeyError):
                event = json.loads(line)
                at = dt.datetime.fromisoformat(event["timestamp"]).timestamp()
                self._stored.setdefault(event["commandId"], at)


def _wait_listening(host: str, port: int, process: subprocess.Popen[Any], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{process.args} did not listen on {port} within {timeout_s} s")


def _terminate(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _close_fleet(process: subprocess.Popen[str]) -> None:
    # Its stdin closing is its signal to disconnect the chargers and exit.
    with contextlib.suppress(OSError):
        if process.stdin is not None:
            process.stdin.close()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class _LightRequestCounter:
    """RequestCounter's keys at a fraction of its cost (it would load the process it measures).

    By operation and table only: no JSON round trip of the body, no walk up the stack.
    """

    _table = re.compile(rb'"TableName":\s*"[^"]*?([A-Za-z]+)"')

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self._lock = threading.Lock()

    def install(self) -> None:
        counter = self

        def counted(target: str, body: bytes, answer: bytes) -> None:
            service, _, operation = target.partition(".")
            service = "DynamoDB" if service.startswith("DynamoDB") else "SQS" if "SQS" in service else service
            if service == "DynamoDB":
                tables = sorted({m.lower().decode() for m in counter._table.findall(body)})
                operation += f" ({'+'.join(tables)})" if tables else ""
            who = "function" if threading.current_thread().name.startswith("lambda-") else "local API"
            with counter._lock:
                counter.counts[(who, service, operation)] += 1

        on_every_request(counted)

    def take(self) -> Counter[tuple[str, str, str]]:
        with self._lock:
            taken, self.counts = self.counts, Counter()
        return taken


def run_local_api(argv: list[str], counts_file: Path, poll_schedule: str | None = None) -> int:
    """The local API process, counting its functions' AWS requests; SIGUSR1 writes them to ``counts_file``.

    Each dump holds the requests since the previous one, keyed ``caller|service|operation``.
    """
    from devstack.local_api import main as local_api

    if poll_schedule:
        import evreserve.channel

        evreserve.channel.POLL_SCHEDULE_S = tuple(float(x) for x in poll_schedule.split(","))
        # A fixed schedule, as given: the learnt first pause would blur the comparison.
        evreserve.channel.LEARN_FIRST_POLL = False
    counter = _LightRequestCounter()
    counter.install()

    from devstack.lambda_runtime import FUNCTION_CPU

    def dump(signum: int, frame: Any) -> None:
        taken: dict[str, float] = {"|".join(k): v for k, v in counter.take().items()}
        # The handlers' own CPU (thread time), beside the requests: "cpu_ms|function|<id>".
        taken.update({f"cpu_ms|function|{fid}": ms for fid, ms in FUNCTION_CPU.take().items()})
        scratch = counts_file.with_suffix(".tmp")
        scratch.write_text(json.dumps(taken))
        scratch.replace(counts_file)

    signal.signal(signal.SIGUSR1, dump)
    return local_api(argv)


def run_chargers(url: str, prefix: str, count: int) -> None:
    """The charger process: connects ``count`` chargers, says READY, and answers ``dump`` with its stamps.

    A stamp is when a ReserveNow / CancelReservation reached a charger (before it answers),
    keyed ``ocppId/action/reservationId``; stdin closing stops the fleet.
    """
    from simulator import Fleet, SimulatedCharger

    stamps: dict[str, float] = {}
    plan = SimulatedCharger.plan

    @functools.wraps(plan)
    def stamped(self: Any, action: str, payload: Any) -> Any:
        if action in ("ReserveNow", "CancelReservation"):
            stamps[f"{self.ocpp_id}/{action}/{payload.get('reservation_id')}"] = time.time()
        return plan(self, action, payload)

    SimulatedCharger.plan = stamped  # type: ignore[method-assign]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        fleet = Fleet(
            SimulatedCharger(f"{prefix}{n}", url, password=PASSWORD, version="1.6", ports=1)
            for n in range(1, count + 1)
        )
        await fleet.start()
        await fleet.wait_connected(120)
        print("READY", flush=True)
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            if line.strip() == "dump":
                print(json.dumps(stamps), flush=True)
        await fleet.stop()

    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main())


#: Template parameters for a load from one account: the per-key and per-account rate limits (200/min by
#: default) and the account's commands in flight (100 a deadline window: ~4.5/s) would
#: answer it with 429s. They protect the service from a runaway client, not what is measured.
LOAD_PARAMETERS = {
    "ApiRateLimitPerMinute": "1000000",
    "ApiRateLimitPerAccountPerMinute": "1000000",
    "AccountCommandsInFlight": "1000000",
}


class RequestCounter:
    """Counts every HTTP request to AWS sent in this process, by caller and operation.

    Hooks every HTTP attempt (``on_every_request``: retries included, what AWS bills).
    The operation comes from the ``X-Amz-Target`` header (DynamoDB and SQS both speak the
    JSON protocol); the caller from the thread name:
    the gateway's pool threads are ``gw-*``, the local API's function threads ``lambda-*``.
    ReceiveMessage answers without messages are counted apart (an idle long poll).
    """

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.enabled = False
        self._lock = threading.Lock()

    def install(self) -> None:
        counter = self

        def counted(target: str, body: bytes, answer: bytes) -> None:
            if not counter.enabled:
                return
            service, _, operation = target.partition(".")
            service = "DynamoDB" if service.startswith("DynamoDB") else "SQS" if "SQS" in service else service
            if operation == "ReceiveMessage" and b'"Messages"' not in answer:
                operation = "ReceiveMessage(empty)"
            elif service == "DynamoDB":
                operation += _tables(body) + _cause()
                if b'"CHARGER#0"' in body:
                    # The gateway's storage probe (one read every 10 s): idle cost.
                    operation = "GetItem(probe)"
            thread = threading.current_thread().name
            who = "gateway" if thread.startswith("gw-") else "function" if thread.startswith("lambda-") else thread
            with counter._lock:
                counter.counts[(who, service, operation)] += 1

        on_every_request(counted)

    def take(self) -> Counter[tuple[str, str, str]]:
        with self._lock:
            taken, self.counts = self.counts, Counter()
        return taken


def on_every_request(record: Callable[[str, bytes, bytes], None]) -> None:
    """Call ``record(target, request body, answer body)`` after every HTTP attempt to AWS,
    retries included (what AWS bills), from whichever client sends it: evreserve.awsjson's
    ``JsonClient._send`` or botocore's ``Endpoint._send`` (``AWS_CLIENT=botocore``, the
    stand-ins' own clients)."""
    from botocore.endpoint import Endpoint

    from evreserve.awsjson import JsonClient

    botocore_send = Endpoint._send

    @functools.wraps(botocore_send)
    def botocore_counted(endpoint: Any, request: Any) -> Any:
        response = botocore_send(endpoint, request)
        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else str(target)
        body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
        record(target, body, response.content or b"")
        return response

    awsjson_send = JsonClient._send

    @functools.wraps(awsjson_send)
    def awsjson_counted(client: Any, body: bytes, target: str) -> Any:
        answer = awsjson_send(client, body, target)
        record(target, body, answer.body)
        return answer

    Endpoint._send = botocore_counted  # type: ignore[method-assign]
    JsonClient._send = awsjson_counted  # type: ignore[method-assign]


class InvocationCounter:
    """Counts function invocations by the local API (``FunctionPool.invoke``), by function."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def install(self) -> None:
        from devstack.lambda_runtime import FunctionPool

        invoke = FunctionPool.invoke
        counter = self

        @functools.wraps(invoke)
        def counted(pool: Any, event: Any, timeout_s: float | None = None) -> Any:
            counter.counts[pool.spec.logical_id] += 1
            return invoke(pool, event, timeout_s)

        FunctionPool.invoke = counted  # type: ignore[method-assign]

    def take(self) -> Counter[str]:
        taken, self.counts = self.counts, Counter()
        return taken


#: Functions whose requests are not the command path: what a charger reported (the
#: gateway stores it) and what the reservation events need (the publisher).
_REPORTS = {
    "record_port_status": "charger's StatusNotification",
    "record_boot": "charger's BootNotification",
    # ReservationStore.transition / for_charger: only the gateway's reports call them.
    "transition": "charger's reservation end",
    "for_charger": "charger's StatusNotification",
    # WebhookStore.of_account: the publisher, finding who else gets the event.
    "of_account": "events' webhooks",
    # InstanceStore: the gateway's lease and the reaper's look at the others', on a timer.
    "renew": "gateway's lease",
    "leases": "gateway's lease",
}


def _cause() -> str:
    """`` [charger's StatusNotification]`` / `` [events' webhooks]`` when the request is not the command path."""
    frame = sys._getframe(2)
    while frame is not None:
        cause = _REPORTS.get(frame.f_code.co_name)
        if cause is not None and "evreserve" in frame.f_code.co_filename:
            return f" [{cause}]"
        frame = frame.f_back  # type: ignore[assignment]
    return ""


def _tables(body: Any) -> str:
    """`` (registry)`` / `` (commands+reservations)``: which tables a DynamoDB request touched."""
    try:
        document = json.loads(body or b"{}")
    except ValueError:
        return ""
    names = re.findall(r'"TableName":\s*"([^"]+)"', json.dumps(document))
    # Physical names are ``{prefix}-{Logical}``-ish; the last word is what a reader wants.
    short = sorted({re.split(r"[-_]", n)[-1].lower() for n in names})
    return f" ({'+'.join(short)})" if short else ""


def group(counts: Counter[tuple[str, str, str]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for (who, service, op), n in sorted(counts.items()):
        out[f"{who} {service}"][op] = n
    return dict(out)


__all__ = [
    "Awaitable",
    "Callable",
    "FullStack",
    "Hops",
    "InvocationCounter",
    "LoopThread",
    "ProcessStack",
    "RequestCounter",
    "Timeline",
]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="ProcessStack's children: the chargers, the counted local API")
    parser.add_argument("role", choices=["chargers", "local-api"])
    parser.add_argument("--url")
    parser.add_argument("--prefix", default="RT-")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--counts-file", type=Path)
    parser.add_argument("--poll-schedule")
    args, rest = parser.parse_known_args()
    if args.role == "chargers":
        run_chargers(args.url, args.prefix, args.count)
    else:
        raise SystemExit(run_local_api(rest, args.counts_file, args.poll_schedule))
