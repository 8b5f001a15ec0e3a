"""Helpers of the end-to-end suite: the API client, the gateway stack, simulated chargers.

The suite drives the service only over HTTP (the local API) and WebSockets (chargers):

* the local API over template.yaml (authorizer and functions), with a short command
  deadline so that a charger that never answers costs seconds, not 22;
* gateway instances as child processes (``python -m evreserve_gateway``, as ECS runs
  them) behind a TCP balancer standing in for the NLB; chargers connect to the balancer;
* seeding through the API as an operator would: admin key -> account -> account key ->
  ``POST /api/chargers``.

The fixtures built from these are in ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx

from devstack import HOST, REPO_ROOT
from devstack.balancer import TcpBalancer
from devstack.gateways import GatewayProcess, free_port
from simulator import Behaviour, SimulatedCharger

T = TypeVar("T")

#: The charger's deadline (the functions' COMMAND_TIMEOUT_S) and the API's grace after it.
COMMAND_TIMEOUT_S = 3.0
COMMAND_GRACE_S = 1.0
#: The longest any command request may take before the test calls it a hang.
ANSWER_BOUND_S = COMMAND_TIMEOUT_S + COMMAND_GRACE_S + 5.0
#: What the e2e gateways run with: a short drain keeps SIGTERM tests quick.
# The message log is flushed every second, so that a test reads what a charger just said.
GATEWAY_ENV = {
    "GATEWAY_DRAIN_TIMEOUT_S": "1.5",
    "GATEWAY_QUEUE_WAIT_S": "5",
    "GATEWAY_MESSAGE_LOG_FLUSH_S": "1",
    "LOG_LEVEL": "INFO",
}
PASSWORD = "e2e-charger-password"
LOG_ROOT = REPO_ROOT / ".cache" / "test-logs"

#: Caller-assigned ids, unique across the session (each module has its own account anyway).
_ids = itertools.count(1000)
_names = itertools.count(1)


def next_id() -> int:
    return next(_ids)


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_names)}"


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def in_seconds(seconds: float) -> str:
    return iso(datetime.now(UTC) + timedelta(seconds=seconds))


async def eventually[T](
    fetch: Callable[[], Awaitable[T]],
    predicate: Callable[[T], bool],
    timeout: float = 10.0,  # noqa: ASYNC109
    what: str = "condition",
) -> T:
    """Poll ``fetch()`` until ``predicate`` holds on its value; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    pause = 0.02
    while True:
        value = await fetch()
        if predicate(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout}s; last value: {value!r}")
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.25)


# --- the API -------------------------------------------------------------------------------


@dataclass
class Account:
    id: int
    key: str


class Api:
    """The account's view of the API: one method per call the suite makes."""

    def __init__(self, http: httpx.AsyncClient, key: str) -> None:
        self.http = http
        self.headers = {"Authorization": f"Bearer {key}"}

    async def reserve(
        self,
        port_id: int | None,
        reservation_id: int,
        id_tag: str = "RFID001",
        expires_in_s: float = 3600,
        **extra: Any,
    ) -> httpx.Response:
        body = {
            **({"portId": port_id} if port_id is not None else {}),
            "expiryDate": in_seconds(expires_in_s),
            "idTag": id_tag,
            "reservationId": reservation_id,
            **extra,
        }
        return await self.http.post("/api/ocpp/reservations", json=body, headers=self.headers)

    async def cancel(self, charger_id: int, reservation_id: int) -> httpx.Response:
        body = {"chargerId": charger_id, "reservationId": reservation_id}
        return await self.http.post("/api/ocpp/reservations/cancel", json=body, headers=self.headers)

    async def reservation(self, reservation_id: int) -> dict[str, Any]:
        answer = await self.http.get(f"/api/ocpp/reservations/{reservation_id}", headers=self.headers)
        assert answer.status_code == 200, answer.text
        data: dict[str, Any] = answer.json()["data"]
        return data

    async def listed(self, charger_id: int, reservation_id: int) -> dict[str, Any] | None:
        """The reservation as ``GET /api/ocpp/reservations?chargerId=`` lists it, or None."""
        answer = await self.http.get(
            "/api/ocpp/reservations", params={"chargerId": charger_id, "limit": 500}, headers=self.headers
        )
        assert answer.status_code == 200, answer.text
        return next((r for r in answer.json()["data"] if r["reservationId"] == reservation_id), None)

    async def charger(self, charger_id: int) -> dict[str, Any]:
        answer = await self.http.get(f"/api/chargers/{charger_id}", headers=self.headers)
        assert answer.status_code == 200, answer.text
        data: dict[str, Any] = answer.json()["data"]
        return data

    async def port_status(self, charger_id: int, port_number: int) -> str | None:
        """The port's ``ocppStatus.status`` (its last StatusNotification) as the API shows it."""
        charger = await self.charger(charger_id)
        port = next(p for p in charger["ports"] if p["portNumber"] == port_number)
        return port["ocppStatus"]["status"] if port["ocppStatus"] else None

    async def wait_port_status(self, charger_id: int, port_number: int, status: str, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        await eventually(
            lambda: self.port_status(charger_id, port_number),
            lambda s: s == status,
            timeout,
            what=f"charger {charger_id} port {port_number} {status}",
        )

    async def wait_listed(
        self,
        charger_id: int,
        reservation_id: int,
        status: str,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        record = await eventually(
            lambda: self.listed(charger_id, reservation_id),
            lambda r: r is not None and r["status"] == status,
            timeout,
            what=f"reservation {reservation_id} listed {status}",
        )
        assert record is not None
        return record


def answer_of(response: httpx.Response) -> tuple[int, str]:
    """(HTTP status, ``data.status`` or the error ``code``): one documented answer."""
    body = response.json()
    return response.status_code, body["data"]["status"] if response.status_code == 200 else body["code"]


# --- gateways behind the balancer ---------------------------------------------------------


class _BalancerThread:
    """The TCP balancer on an event loop of its own, apart from the tests' (like an NLB)."""

    def __init__(self, backends: list[int]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="e2e-balancer", daemon=True)
        self.balancer = TcpBalancer(backends)

    def start(self) -> int:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.balancer.start(), self._loop).result(10)
        return self.balancer.port

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.balancer.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@dataclass
class Stack:
    """Gateway processes behind one balancer; chargers connect to ``ws_url``."""

    gateways: list[GatewayProcess]
    balancer_port: int

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.balancer_port}/ocpp"

    def health(self, gateway: GatewayProcess) -> dict[str, Any]:
        """The instance's ``GET /health`` (``chargers`` it holds, ``commandsInFlight``)."""
        url = f"http://{HOST}:{gateway.port}/health"
        with urllib.request.urlopen(url, timeout=2) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data

    def log_events(self, gateway: GatewayProcess) -> list[dict[str, Any]]:
        """The instance's JSON log lines so far."""
        events = []
        for line in Path(gateway.log_path).read_text().splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        return events

    def held_by(self, gateway: GatewayProcess) -> set[str]:
        """The ocppIds whose latest connection to ``gateway`` it logged as connected and not yet closed."""
        live: set[tuple[str, str]] = set()
        for event in self.log_events(gateway):
            session = (event.get("charger", ""), event.get("sessionId", ""))
            if event.get("message") == "charger connected":
                live.add(session)
            elif event.get("message") == "charger disconnected":
                live.discard(session)
        return {charger for charger, _ in live}

    def completed_commands(self, gateway: GatewayProcess) -> list[dict[str, Any]]:
        """The ``command completed`` log lines of ``gateway`` (charger, action, outcome)."""
        return [e for e in self.log_events(gateway) if e.get("message") == "command completed"]


async def placement(stack: Stack, ocpp_ids: set[str], live: list[GatewayProcess]) -> dict[str, set[str]]:
    """Which live instance holds each of ``ocpp_ids``: instance id -> the ids it holds.

    Waits until every id is held by exactly one of ``live`` according to its log and each
    instance's ``GET /health`` count equals what its log says it holds.
    """

    async def observe() -> tuple[dict[str, set[str]], dict[str, int]]:
        held = {g.instance_id: stack.held_by(g) for g in live}
        counts = {g.instance_id: int(stack.health(g)["chargers"]) for g in live}
        return held, counts

    def settled(seen: tuple[dict[str, set[str]], dict[str, int]]) -> bool:
        held, counts = seen
        owners = [sum(ocpp_id in ids for ids in held.values()) for ocpp_id in ocpp_ids]
        return all(n == 1 for n in owners) and all(counts[i] == len(ids) for i, ids in held.items())

    held, _ = await eventually(observe, settled, timeout=15, what="chargers placed on the live instances")
    return {instance: ids & ocpp_ids for instance, ids in held.items()}


def _ours(gateway: GatewayProcess) -> bool:
    """Whether the server on the gateway's port is that gateway (and not whoever took the port first)."""
    try:
        gateway.wait_healthy()
        url = f"http://{HOST}:{gateway.port}/health"
        with urllib.request.urlopen(url, timeout=2) as response:
            answer = json.loads(response.read())
    except (RuntimeError, OSError, ValueError):
        return False
    alive = gateway.process is not None and gateway.process.poll() is None
    return alive and answer.get("instanceId") == gateway.instance_id


@contextlib.contextmanager
def running_stack(instances: int, name: str) -> Iterator[Stack]:
    """``instances`` gateway processes (ids ``{name}-1``..) behind a fresh balancer."""
    log_dir = LOG_ROOT / f"e2e-{os.getpid()}"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **GATEWAY_ENV}
    gateways = [
        GatewayProcess(f"{name}-{i}", free_port(), log_dir / f"{name}-{i}.log") for i in range(1, instances + 1)
    ]
    balancer: _BalancerThread | None = None
    try:
        for gateway in gateways:
            gateway.start(env)
        for gateway in gateways:
            # free_port() only names a port that was free a moment ago: on a busy machine
            # another process may bind it first. Then this gateway starts on another one.
            for _ in range(3):
                if _ours(gateway):
                    break
                gateway.kill()
                gateway.port = free_port()
                gateway.start(env)
            else:
                raise RuntimeError(f"gateway {gateway.instance_id} did not start; see {gateway.log_path}")
        balancer = _BalancerThread([g.port for g in gateways])
        yield Stack(gateways, balancer.start())
    finally:
        if balancer is not None:
            balancer.stop()
        stoppers = [threading.Thread(target=g.stop, kwargs={"timeout_s": 10}) for g in gateways]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()


# --- chargers ------------------------------------------------------------------------------


@dataclass
class Charger:
    """A registered charger (as the API returned it) and the simulator playing it."""

    id: int
    ocpp_id: str
    port_ids: dict[int, int]  # port number -> portId of the reservation API
    sim: SimulatedCharger
    data: dict[str, Any] = field(repr=False)


class ChargerFactory(Protocol):
    async def __call__(
        self,
        version: str = "1.6",
        *,
        ports: int = 2,
        registered_ports: int | None = None,
        behaviour: Behaviour | None = None,
        port_behaviour: dict[int, Behaviour] | None = None,
        connect: bool = True,
    ) -> Charger: ...


async def register(api: Api, version: str, ports: int) -> dict[str, Any]:
    body = {
        "ocppId": unique(f"E2E-{version}"),
        "ocppVersion": version,
        "password": PASSWORD,
        "ports": [{"portNumber": n, "connectorType": "cType2"} for n in range(1, ports + 1)],
    }
    answer = await api.http.post("/api/chargers", json=body, headers=api.headers)
    assert answer.status_code == 201, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data
