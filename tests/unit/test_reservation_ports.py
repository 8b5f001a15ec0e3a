"""Which charger a reservation's portId reaches: the pointer an instance remembers never outlives the port.

The reservation service remembers port -> (charger, account) after the first request
for a port and then reads only the charger item. These tests change the registry under
a warm service (port deleted, charger deleted, charger recreated, another tenant) and
check that every answer is the one a cold service would give.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from api_harness import (
    ACCOUNT_ID,
    CHARGER_ID,
    OCPP_ID,
    OTHER_ACCOUNT_ID,
    PORT_ID,
    SECOND_PORT_ID,
    Stack,
    add_other_account,
    connect,
    future,
    seed,
    start_stack,
)

from evreserve.errors import ChargerOffline, NotFound
from evreserve.models import Charger, Port, ReserveStatus
from evreserve.services.principal import Principal
from evreserve.services.reservations import PortCache
from evreserve_lambda.schemas import ChargerCreate, PortInput, ReserveRequest

OWNER = Principal(key_id="acct", account_id=ACCOUNT_ID)
STRANGER = Principal(key_id="other", account_id=OTHER_ACCOUNT_ID)


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    for stack in start_stack(monkeypatch):
        seed(stack)
        add_other_account(stack)
        yield stack


@pytest.fixture
def reads(stack: Stack) -> list[str]:
    """The partition key of every GetItem the services send, in order."""
    seen: list[str] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        seen.append(params["Key"]["pk"]["S"])

    stack.dynamodb.meta.events.register("provide-client-params.dynamodb.GetItem", record)
    return seen


def reserve(stack: Stack, principal: Principal, port_id: int = PORT_ID, reservation_id: int = 1001) -> ReserveStatus:
    request = ReserveRequest.model_validate(
        {"portId": port_id, "expiryDate": future(), "idTag": "RFID001", "reservationId": reservation_id}
    )
    return stack.services.reservations.reserve(principal, request.to_domain())


def charger(charger_id: int, account_id: int, ports: tuple[Port, ...]) -> Charger:
    now = datetime.now(UTC)
    return Charger(
        id=charger_id, account_id=account_id, ocpp_id=f"CP-{charger_id}", ports=ports, created_at=now, updated_at=now
    )


def test_first_request_reads_the_pointer_later_ones_only_the_charger(stack: Stack, reads: list[str]):
    """Cold: the port's pointer then the charger; warm: the charger alone."""
    assert reserve(stack, OWNER, reservation_id=1) is ReserveStatus.ACCEPTED
    assert [k for k in reads if k.startswith(("PORT#", "CHARGER#"))] == [f"PORT#{PORT_ID}", f"CHARGER#{CHARGER_ID}"]
    reads.clear()
    assert reserve(stack, OWNER, reservation_id=2) is ReserveStatus.ACCEPTED
    assert [k for k in reads if k.startswith(("PORT#", "CHARGER#"))] == [f"CHARGER#{CHARGER_ID}"]


def test_deleted_port_is_404_with_a_warm_pointer(stack: Stack, reads: list[str]):
    """GIVEN the port remembered WHEN it is deleted THEN 404, the pointer read again, nothing sent."""
    reserve(stack, OWNER, reservation_id=1)
    stack.services.chargers.delete_port(OWNER, CHARGER_ID, PORT_ID)
    sent = len(stack.gateway.sent)
    reads.clear()
    with pytest.raises(NotFound):
        reserve(stack, OWNER, reservation_id=2)
    assert [k for k in reads if k.startswith(("PORT#", "CHARGER#"))] == [f"CHARGER#{CHARGER_ID}", f"PORT#{PORT_ID}"]
    assert len(stack.gateway.sent) == sent
    assert reserve(stack, OWNER, port_id=SECOND_PORT_ID, reservation_id=3) is ReserveStatus.ACCEPTED


def test_deleted_charger_is_404_with_a_warm_pointer(stack: Stack):
    """GIVEN the port remembered WHEN its charger is deleted THEN 404 and nothing sent."""
    reserve(stack, OWNER, reservation_id=1)
    stack.services.chargers.delete(OWNER, CHARGER_ID)
    sent = len(stack.gateway.sent)
    with pytest.raises(NotFound):
        reserve(stack, OWNER, reservation_id=2)
    assert len(stack.gateway.sent) == sent


def test_recreated_charger_gets_new_ports_and_the_old_port_stays_404(stack: Stack):
    """A charger deleted and registered again (same ocppId) has new port ids; the old one is 404."""
    reserve(stack, OWNER, reservation_id=1)
    services = stack.services
    services.chargers.delete(OWNER, CHARGER_ID)
    registered = services.chargers.register(
        OWNER, ChargerCreate(ocpp_id=OCPP_ID, ports=[PortInput(port_number=1)]).to_domain()
    ).charger
    connect(stack, registered.id)
    with pytest.raises(NotFound):
        reserve(stack, OWNER, reservation_id=2)
    new_port = registered.ports[0].id
    assert new_port not in (PORT_ID, SECOND_PORT_ID)
    assert reserve(stack, OWNER, port_id=new_port, reservation_id=3) is ReserveStatus.ACCEPTED


def test_an_id_reused_by_another_tenant_never_leaks(stack: Stack):
    """Even if the charger and its port came back under another account (ids are never reused), the owner gets 404."""
    reserve(stack, OWNER, reservation_id=1)
    registry = stack.services.registry
    registry.delete_charger(registry.get_charger(CHARGER_ID))  # type: ignore[arg-type]
    registry.create_charger(charger(CHARGER_ID, OTHER_ACCOUNT_ID, (Port(id=PORT_ID, port_number=1),)))
    connect(stack, CHARGER_ID)
    sent = len(stack.gateway.sent)
    with pytest.raises(NotFound):
        reserve(stack, OWNER, reservation_id=2)
    assert len(stack.gateway.sent) == sent
    assert reserve(stack, STRANGER, reservation_id=2) is ReserveStatus.ACCEPTED


def test_port_moved_to_another_charger_of_the_account_is_followed(stack: Stack):
    """Were the port ever on another charger, the remembered one is dropped and the pointer followed."""
    reserve(stack, OWNER, reservation_id=1)
    registry = stack.services.registry
    registry.delete_charger(registry.get_charger(CHARGER_ID))  # type: ignore[arg-type]
    other = registry.next_id("charger")
    registry.create_charger(charger(other, ACCOUNT_ID, (Port(id=PORT_ID, port_number=3),)))
    connect(stack, other)
    assert reserve(stack, OWNER, reservation_id=2) is ReserveStatus.ACCEPTED
    assert stack.gateway.sent[-1].charger_id == other != CHARGER_ID
    assert stack.gateway.sent[-1].payload["connectorId"] == 3


def test_another_tenant_gets_404_cold_and_warm(stack: Stack, reads: list[str]):
    """Another account's key: 404 before and after the owner warmed the pointer, without reading the charger warm."""
    with pytest.raises(NotFound):
        reserve(stack, STRANGER)
    reserve(stack, OWNER, reservation_id=1)
    reads.clear()
    with pytest.raises(NotFound):
        reserve(stack, STRANGER, reservation_id=2)
    assert not [k for k in reads if k.startswith("CHARGER#")]


def test_key_limited_to_other_chargers_gets_404_warm(stack: Stack):
    """A key of the same account limited to charger 99: 404 on the port even when it is remembered."""
    reserve(stack, OWNER, reservation_id=1)
    with pytest.raises(NotFound):
        reserve(stack, Principal(key_id="scoped", account_id=ACCOUNT_ID, charger_ids=frozenset({99})), reservation_id=2)


def test_offline_charger_is_409_warm(stack: Stack):
    """The connection is read from the charger item every time: a disconnected charger is 409 though remembered."""
    reserve(stack, OWNER, reservation_id=1)
    stack.services.registry.register_disconnection(CHARGER_ID, f"s-{CHARGER_ID}", datetime.now(UTC))
    with pytest.raises(ChargerOffline):
        reserve(stack, OWNER, reservation_id=2)


def test_cache_drops_the_least_recently_used():
    """A bounded memory: past its size the port used longest ago goes first."""
    cache = PortCache(max_entries=2)
    cache.put(1, 10, 7)
    cache.put(2, 20, 7)
    assert cache.get(1) == (10, 7)
    cache.put(3, 30, 7)
    assert (cache.get(1), cache.get(2), cache.get(3), len(cache)) == ((10, 7), None, (30, 7), 2)
