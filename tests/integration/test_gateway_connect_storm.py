"""A connect storm (a fleet reconnecting after a restart): every charger gets a connection or a 503 with
Retry-After, never a dropped handshake, and the chargers already connected are answered meanwhile."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from fixtures.gateway_fixtures import charger_session, charger_url, wait_until
from ocpp.v16 import call as call16
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from evreserve.models import Charger
from evreserve.security import verify_password
from evreserve.storage.registry import RegistryStore
from evreserve_gateway import Dependencies, Gateway

pytestmark = pytest.mark.integration


class HeldLookups(RegistryStore):
    """A gateway's registry whose charger lookups can be held (a storage backlog)."""

    def __init__(self, client: Any, table: str) -> None:
        super().__init__(client, table)
        self.events: list[threading.Event] = []

    def inject(self, deps: Dependencies) -> Dependencies:
        return replace(deps, registry=self)

    def hold(self) -> threading.Event:
        """Hold the lookups from now on, until the returned event is set."""
        self.events.append(threading.Event())
        return self.events[-1]

    def get_charger_by_ocpp_id(self, ocpp_id: str) -> Charger | None:
        if self.events:
            self.events[-1].wait(10)
        return super().get_charger_by_ocpp_id(ocpp_id)


@pytest.fixture
def held_lookups(gateway_clients: Any, gateway_settings: Any) -> Iterator[HeldLookups]:
    """A registry to inject into a gateway, whose lookups wait from ``hold()`` until the event it returns is set."""
    registry = HeldLookups(gateway_clients.dynamodb, gateway_settings().registry_table)
    yield registry
    for release in registry.events:  # no gateway thread is left waiting after the test
        release.set()


def health(gateway: Gateway) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}/health", timeout=5) as response:
        body: dict[str, Any] = json.loads(response.read())
        return body


async def opened(url: str) -> ClientConnection:
    return await connect(url, subprotocols=["ocpp1.6"], open_timeout=20)  # type: ignore[list-item]


async def refusal(url: str) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, subprotocols=["ocpp1.6"], open_timeout=20):  # type: ignore[list-item]
            pass
    return refused.value


def retry_after(refused: InvalidStatus) -> int:
    assert refused.response.status_code == 503
    value = refused.response.headers["Retry-After"]
    assert value.isdigit() and int(value) >= 1
    return int(value)


async def connect_like_a_charger(url: str, refusals: list[int]) -> ClientConnection:
    """Connect, waiting out every 503's Retry-After as a charger does; any other failure fails the test."""
    while True:
        try:
            return await opened(url)
        except InvalidStatus as exc:
            refusals.append(retry_after(exc))
            await asyncio.sleep(refusals[-1])


async def test_handshakes_past_the_limit_get_503_with_retry_after(start_gateway, seed_charger, held_lookups):
    """With the limit of handshakes in progress reached, the next charger is refused at once with 503 and a
    Retry-After, and the ones in progress still connect."""
    gateway = await start_gateway(inject=held_lookups.inject, gateway_max_handshakes=2)
    first, second, third = seed_charger(), seed_charger(), seed_charger()
    release = held_lookups.hold()
    in_progress = [asyncio.create_task(opened(charger_url(gateway, c.ocpp_id))) for c in (first, second)]
    await wait_until(lambda: health(gateway)["handshakesInProgress"] == 2, what="two handshakes in progress")

    retry_after(await refusal(charger_url(gateway, third.ocpp_id)))

    release.set()
    for ws in await asyncio.gather(*in_progress):
        assert ws.subprotocol == "ocpp1.6"
        await ws.close()


async def test_handshake_over_its_budget_gets_503_not_a_dropped_connection(
    start_gateway, seed_charger, held_lookups, caplog
):
    """A handshake the gateway cannot finish within its budget is answered 503 + Retry-After (and logged), well
    before websockets' open timeout would drop it without an answer."""
    caplog.set_level(logging.WARNING, logger="evreserve_gateway")
    gateway = await start_gateway(inject=held_lookups.inject, gateway_handshake_timeout_s=0.3)
    charger = seed_charger()
    release = held_lookups.hold()

    retry_after(await refusal(charger_url(gateway, charger.ocpp_id)))
    assert any(r.getMessage().startswith("handshake over its time budget") for r in caplog.records)

    release.set()
    async with connect(charger_url(gateway, charger.ocpp_id), subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "ocpp1.6"


async def test_password_check_outlives_a_handshake_out_of_time(start_gateway, seed_charger):
    """A password hash check still running when its handshake runs out of time completes, and the charger's retry is
    admitted without a second check."""
    checks: list[str] = []
    finished = threading.Event()

    def slow_check(password: str, stored: str) -> bool:
        checks.append(password)
        threading.Event().wait(0.6)
        try:
            return verify_password(password, stored)
        finally:
            finished.set()

    gateway = await start_gateway(
        inject=lambda deps: replace(deps, verify_password=slow_check), gateway_handshake_timeout_s=0.2
    )
    charger = seed_charger()

    retry_after(await refusal(charger_url(gateway, charger.ocpp_id)))
    await wait_until(finished.is_set, what="the password check to finish")
    async with connect(charger_url(gateway, charger.ocpp_id), subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "ocpp1.6"
    assert len(checks) == 1


async def test_storm_every_charger_connects_after_waiting_out_retry_after(start_gateway, seed_charger):
    """Twenty-four chargers arriving at once at a gateway admitting three handshakes at a time are refused with
    Retry-After, never dropped, and all are connected once they have waited as asked."""
    gateway = await start_gateway(gateway_max_handshakes=3, gateway_handshake_timeout_s=0.5)
    chargers = [seed_charger() for _ in range(24)]
    refusals: list[int] = []

    sockets = await asyncio.gather(
        *(connect_like_a_charger(charger_url(gateway, c.ocpp_id), refusals) for c in chargers)
    )

    assert refusals, "no storm: every handshake was admitted at once"
    assert all(ws.subprotocol == "ocpp1.6" for ws in sockets)
    await wait_until(lambda: gateway.charger_count == len(chargers), what="every charger held")
    await asyncio.gather(*(ws.close() for ws in sockets))


async def test_connected_charger_is_answered_during_a_storm(start_gateway, seed_charger, held_lookups):
    """While handshakes are stuck on storage and the excess is refused, a connected charger's Heartbeat is
    answered."""
    gateway = await start_gateway(inject=held_lookups.inject, gateway_max_handshakes=4)
    connected = seed_charger()
    waiting = [seed_charger() for _ in range(12)]
    async with charger_session(gateway, connected) as cp:
        release = held_lookups.hold()
        storm = [asyncio.create_task(opened(charger_url(gateway, c.ocpp_id))) for c in waiting]
        await wait_until(lambda: health(gateway)["handshakesInProgress"] == 4, what="the gate full")

        answer = await asyncio.wait_for(cp.call(call16.Heartbeat()), 5)

        assert answer.current_time.endswith("Z")
        release.set()
        outcomes = await asyncio.gather(*storm, return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, InvalidStatus)]
    for outcome in refused:
        retry_after(outcome)
    assert len(refused) == len(waiting) - 4
    for ws in outcomes:
        if isinstance(ws, ClientConnection):
            await ws.close()
