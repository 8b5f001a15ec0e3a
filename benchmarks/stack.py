"""The whole local stack in one benchmark process, with probes on its hops.

LocalAws (DynamoDB Local and the SQS server, child processes), the gateway (in-process,
on its own event loop in a thread), the local API (in-process; it runs each function in
a thread, as ``sam local`` would in a container), an account with an API key, and
simulated chargers (on another loop in a thread) connected to the gateway with their
passwords. Everything in one process lets the benchmarks wrap methods to timestamp hops
and count requests; the price is that the pieces share one GIL, which a deployment
would not (the figures are an upper bound on the local overheads).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass, field
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
            gateway = Gateway(settings)
            await gateway.start()
            return gateway

        self.gateway = self.gw_loop.run(start_gateway())
        stack.callback(lambda: self.gw_loop and self.gw_loop.run(self.gateway.stop(), 60))

        # The per-key rate limit (200/min by default) would answer the load with 429s.
        self.api = stack.enter_context(LocalApi(port=0, parameters={"ApiRateLimitPerMinute": "1000000"}))
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
        from evreserve.schemas import AccountCreate, ApiKeyCreate, ChargerCreate, PortInput
        from evreserve.services.accounts import ensure_admin_key
        from evreserve.services.bootstrap import build_services
        from evreserve.services.principal import Principal
        from evreserve.settings import CoreSettings

        services = build_services(CoreSettings())  # type: ignore[call-arg]
        admin = Principal.of(ensure_admin_key(services.registry, "evr_bench-admin-key"))
        account = services.accounts.create_account(admin, AccountCreate(name="bench"))
        issued = services.accounts.create_api_key(admin, account.id, ApiKeyCreate(name="bench"))
        self.api_key = issued.secret
        owner = Principal.of(issued.key)
        for n in range(1, self.count + 1):
            registered = services.chargers.register(
                owner,
                ChargerCreate(
                    ocpp_id=f"{self.prefix}{n}",
                    ocpp_version="1.6",  # type: ignore[arg-type]
                    password=PASSWORD,  # type: ignore[arg-type]
                    ports=[PortInput(port_number=1)],
                ),
            )
            charger = registered.charger
            self.chargers.append(BenchCharger(charger.ocpp_id, charger.id, charger.ports[0].id))


class RequestCounter:
    """Counts every HTTP request botocore sends in this process, by caller and operation.

    Wraps ``botocore.endpoint.Endpoint._send`` (one call per HTTP attempt, retries
    included: what AWS bills). The operation comes from the ``X-Amz-Target`` header
    (DynamoDB and SQS both speak the JSON protocol); the caller from the thread name:
    the gateway's pool threads are ``gw-*``, the local API's function threads ``lambda-*``.
    ReceiveMessage answers without messages are counted apart (an idle long poll).
    """

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.enabled = False
        self._lock = threading.Lock()

    def install(self) -> None:
        from botocore.endpoint import Endpoint

        send = Endpoint._send
        counter = self

        @functools.wraps(send)
        def counted(endpoint: Any, request: Any) -> Any:
            response = send(endpoint, request)
            if counter.enabled:
                target = request.headers.get("X-Amz-Target", b"")
                target = target.decode() if isinstance(target, bytes) else str(target)
                service, _, operation = target.partition(".")
                service = "DynamoDB" if service.startswith("DynamoDB") else "SQS" if "SQS" in service else service
                if operation == "ReceiveMessage" and b'"Messages"' not in (response.content or b""):
                    operation = "ReceiveMessage(empty)"
                elif service == "DynamoDB":
                    operation += _tables(request.body) + _cause()
                    if b'"CHARGER#0"' in (request.body or b""):
                        # The gateway's storage probe (one read every 10 s): idle cost.
                        operation = "GetItem(probe)"
                thread = threading.current_thread().name
                who = "gateway" if thread.startswith("gw-") else "function" if thread.startswith("lambda-") else thread
                with counter._lock:
                    counter.counts[(who, service, operation)] += 1
            return response

        Endpoint._send = counted  # type: ignore[method-assign]

    def take(self) -> Counter[tuple[str, str, str]]:
        with self._lock:
            taken, self.counts = self.counts, Counter()
        return taken


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


#: Gateway functions that write what a charger reported, not what a command needs.
_REPORTS = {
    "record_port_status": "StatusNotification",
    "record_boot": "BootNotification",
    # ReservationStore.transition / for_charger: only the gateway's reports call them.
    "transition": "reservation end",
    "for_charger": "StatusNotification",
}


def _cause() -> str:
    """`` [charger's StatusNotification]`` when the request is the gateway storing a charger's report."""
    frame = sys._getframe(2)
    while frame is not None:
        cause = _REPORTS.get(frame.f_code.co_name)
        if cause is not None and "evreserve" in frame.f_code.co_filename:
            return f" [charger's {cause}]"
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


__all__ = ["Awaitable", "Callable", "FullStack", "Hops", "InvocationCounter", "LoopThread", "RequestCounter"]
