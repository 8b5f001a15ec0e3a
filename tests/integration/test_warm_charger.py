"""A warm API function remembers the chargers it read; every command still follows the charger as it is now.

The reservation service keeps a connected charger's item between requests and lets the
command's own transaction confirm it (``ChargerCache``, ``RegistryStore.unchanged_request``).
Real gateways on 127.0.0.1:0, DynamoDB Local, the local SQS and the chargers' real WebSocket
clients: a charger that moved to another instance, went offline or was deleted after it was
remembered gets the answer a cold function would give.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from fixtures.aws_faults import answer_with
from fixtures.gateway_fixtures import Behaviour, charger_session, wait_held, wait_until
from ocpp.v16 import call as call16

from evreserve.aws import dynamodb_client
from evreserve.errors import ChargerOffline, NotFound
from evreserve.models import Charger, OcppVersion, ReservationState, utcnow
from evreserve.requests import CancelRequest, ReserveRequest
from evreserve.services.bootstrap import Services, build_services
from evreserve.services.principal import Principal
from evreserve.settings import CoreSettings
from evreserve.storage.registry import RegistryStore
from evreserve.storage.reservations import ReservationStore
from evreserve_gateway import GatewaySettings

pytestmark = pytest.mark.integration


def rid(charger: Charger, n: int) -> int:
    """Reservation ids of one charger's test: the session's tests share one account and its ids."""
    return charger.id * 100 + n


def reserve(services: Services, charger: Charger, n: int, by_port: bool = True) -> str:
    owner = Principal(key_id="k", account_id=charger.account_id)
    request = ReserveRequest(
        port_id=charger.ports[0].id if by_port else None,
        charger_id=None if by_port else charger.id,
        expiry_date=utcnow() + timedelta(hours=2),
        id_tag="RFID001",
        reservation_id=rid(charger, n),
    )
    return str(services.reservations.reserve(owner, request))


def offline(registry: RegistryStore, charger: Charger) -> Callable[[], bool]:
    def check() -> bool:
        stored = registry.get_charger(charger.id)
        return stored is not None and not stored.is_connected

    return check


@pytest.mark.parametrize("by_port", [True, False], ids=["portId", "chargerId"])
async def test_a_charger_that_moved_to_another_instance_is_reached_there(
    start_gateway: Any, seed_charger: Any, registry: RegistryStore, by_port: bool
) -> None:
    """Remembered on instance A, the charger goes offline (409, no command) and comes back on B: the next
    reservation reaches it on B, one ReserveNow, none on the old session."""
    first, second = await start_gateway(), await start_gateway()
    charger = seed_charger()
    services = build_services(CoreSettings())  # type: ignore[call-arg]
    on_first, on_second = Behaviour(), Behaviour()
    async with charger_session(first, charger, OcppVersion.V16, on_first):
        await wait_held(first, charger, registry)
        assert await asyncio.to_thread(reserve, services, charger, 1, by_port) == "Accepted"
    await wait_until(offline(registry, charger), what="the disconnection to be registered")
    with pytest.raises(ChargerOffline):
        await asyncio.to_thread(reserve, services, charger, 2, by_port)
    async with charger_session(second, charger, OcppVersion.V201, on_second):
        await wait_held(second, charger, registry)
        assert await asyncio.to_thread(reserve, services, charger, 3, by_port) == "Accepted"
        assert await asyncio.to_thread(reserve, services, charger, 4, by_port) == "Accepted"
    assert [a for a, _ in on_first.received] == ["ReserveNow"]
    assert [(a, p["id"]) for a, p in on_second.received] == [
        ("ReserveNow", rid(charger, 3)),
        ("ReserveNow", rid(charger, 4)),
    ]


async def test_a_cancel_follows_the_charger_to_another_instance(
    start_gateway: Any, seed_charger: Any, registry: RegistryStore
) -> None:
    """The cancel path remembers the charger too: after it moved from instance A to B, the
    CancelReservation goes to B's live session and its answer comes back."""
    first, second = await start_gateway(), await start_gateway()
    charger = seed_charger()
    services = build_services(CoreSettings())  # type: ignore[call-arg]
    owner = Principal(key_id="k", account_id=charger.account_id)
    async with charger_session(first, charger):
        await wait_held(first, charger, registry)
        assert await asyncio.to_thread(reserve, services, charger, 11) == "Accepted"
    behaviour = Behaviour()
    async with charger_session(second, charger, OcppVersion.V16, behaviour):
        await wait_held(second, charger, registry)
        cancel = CancelRequest(charger_id=charger.id, reservation_id=rid(charger, 11))
        assert await asyncio.to_thread(services.reservations.cancel, owner, cancel) == "Accepted"
    assert [a for a, _ in behaviour.received] == ["CancelReservation"]


async def test_a_deleted_charger_is_404_though_remembered(
    start_gateway: Any, seed_charger: Any, registry: RegistryStore
) -> None:
    """Deleted while connected and remembered: 404 and no command, by port and by charger id."""
    gateway = await start_gateway()
    charger = seed_charger()
    services = build_services(CoreSettings())  # type: ignore[call-arg]
    behaviour = Behaviour()
    async with charger_session(gateway, charger, OcppVersion.V16, behaviour):
        await wait_held(gateway, charger, registry)
        assert await asyncio.to_thread(reserve, services, charger, 21) == "Accepted"
        registry.delete_charger(charger)
        for by_port in (True, False):
            with pytest.raises(NotFound):
                await asyncio.to_thread(reserve, services, charger, 22, by_port)
    assert [a for a, _ in behaviour.received] == ["ReserveNow"]


@pytest.mark.parametrize("aws_client", ["awsjson", "botocore"])
async def test_a_status_report_meeting_a_commands_transaction_is_stored(
    start_gateway: Any,
    seed_charger: Any,
    seed_reservation: Any,
    registry: RegistryStore,
    reservation_store: ReservationStore,
    aws_client: str,
) -> None:
    """The command's transaction checks the charger item, and DynamoDB rejects a plain write to an item
    inside an ongoing transaction (TransactionConflictException). The gateway's StatusNotification write
    that meets one is written again: the status is stored and ends the reservation it ends, not dropped."""
    dynamodb = dynamodb_client(GatewaySettings(aws_read_timeout_s=5.0, aws_client=aws_client))
    gateway = await start_gateway(inject=lambda deps: replace(deps, registry=RegistryStore(dynamodb, registry.table)))
    charger = seed_charger()
    reservation = seed_reservation(charger, 1)
    async with charger_session(gateway, charger) as cp:
        await wait_held(gateway, charger, registry)
        answered = answer_with(dynamodb, "UpdateItem", "TransactionConflictException", times=1)
        await cp.call(call16.StatusNotification(connector_id=1, error_code="GroundFailure", status="Faulted"))

        def removed() -> bool:
            stored = reservation_store.get(charger.account_id, reservation.reservation_id)
            return stored is not None and stored.state is ReservationState.REMOVED

        await wait_until(removed, 5, what="the reservation ended by the Faulted port")
    assert answered == [1]
    port = registry.get_charger(charger.id).port_by_number(1)  # type: ignore[union-attr]
    assert port is not None and port.ocpp_status is not None and port.ocpp_status.status == "Faulted"
