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
    QUEUE_URL,
    SECOND_PORT_ID,
    Stack,
    add_other_account,
    connect,
    future,
    seed,
    start_stack,
)

from evreserve.aws import ClientError
from evreserve.errors import ChargerOffline, DependencyUnavailable, NotFound
from evreserve.models import Charger, Connection, ConnectionState, OcppVersion, Port, ReserveStatus
from evreserve.requests import CancelRequest, ChargerChanges, NewPort
from evreserve.services.memory import ChargerCache, PortCache
from evreserve.services.principal import Principal
from evreserve.storage import commands as commands_module
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


def test_first_request_reads_the_pointer_and_the_charger_later_ones_neither(stack: Stack, reads: list[str]):
    """Cold: the port's pointer then the charger; warm: no read, the command's transaction checks the charger."""
    assert reserve(stack, OWNER, reservation_id=1) is ReserveStatus.ACCEPTED
    assert [k for k in reads if k.startswith(("PORT#", "CHARGER#"))] == [f"PORT#{PORT_ID}", f"CHARGER#{CHARGER_ID}"]
    reads.clear()
    checked: list[str] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        checked.extend(i["ConditionCheck"]["Key"]["pk"]["S"] for i in params["TransactItems"] if "ConditionCheck" in i)

    stack.dynamodb.meta.events.register("provide-client-params.dynamodb.TransactWriteItems", record)
    assert reserve(stack, OWNER, reservation_id=2) is ReserveStatus.ACCEPTED
    assert [k for k in reads if k.startswith(("PORT#", "CHARGER#"))] == []
    assert checked == [f"CHARGER#{CHARGER_ID}"]


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


# -- the charger an instance remembers (ChargerCache) -------------------------------------


def reconnect(stack: Stack, session: str, queue: str) -> None:
    """The charger connects anew (another session, on another instance)."""
    stack.services.registry.register_connection(
        CHARGER_ID,
        Connection(
            state=ConnectionState.CONNECTED,
            timestamp=datetime.now(UTC),
            session_id=session,
            instance_id="i2",
            queue_url=queue,
            protocol=OcppVersion.V16,
        ),
    )


def test_a_reconnected_charger_gets_its_command_on_the_new_connection(stack: Stack, reads: list[str]):
    """GIVEN the charger remembered WHEN it reconnects elsewhere THEN the transaction's check fails, nothing is
    written, the charger is read again and the one command goes to the new session's queue."""
    reserve(stack, OWNER, reservation_id=1)
    reconnect(stack, "s-new", "http://sqs.local/000000000000/evreserve-gw-i2")
    sent = len(stack.gateway.sent)
    reads.clear()
    assert reserve(stack, OWNER, reservation_id=2) is ReserveStatus.ACCEPTED
    assert [k for k in reads if k.startswith("CHARGER#")] == [f"CHARGER#{CHARGER_ID}"]
    assert [(c.session_id, c.instance_id) for c in stack.gateway.sent[sent:]] == [("s-new", "i2")]
    assert reserve(stack, OWNER, reservation_id=3) is ReserveStatus.ACCEPTED  # remembered again
    assert stack.gateway.sent[-1].session_id == "s-new"


def test_a_port_added_to_a_remembered_charger_is_found(stack: Stack):
    """The remembered copy lacks a port added since: the charger is read again, not 404."""
    reserve(stack, OWNER, reservation_id=1)
    _, port = stack.services.chargers.add_port(OWNER, CHARGER_ID, NewPort(port_number=3))
    assert reserve(stack, OWNER, port_id=port.id, reservation_id=2) is ReserveStatus.ACCEPTED
    assert stack.gateway.sent[-1].payload["connectorId"] == 3


def test_a_registry_change_is_read_before_the_next_command(stack: Stack):
    """An update of the charger (here its OCPP version) after it was remembered: the next command is built
    from the charger as it is now, and only one is sent."""
    reserve(stack, OWNER, reservation_id=1)
    stack.services.registry.register_disconnection(CHARGER_ID, f"s-{CHARGER_ID}", datetime.now(UTC))
    stack.services.chargers.update(
        OWNER, CHARGER_ID, ChargerChanges(given=frozenset({"ocpp_version"}), ocpp_version=OcppVersion.V201)
    )
    connect(stack, CHARGER_ID, OcppVersion.V201)
    sent = len(stack.gateway.sent)
    assert reserve(stack, OWNER, reservation_id=2) is ReserveStatus.ACCEPTED
    assert [c.ocpp_version for c in stack.gateway.sent[sent:]] == [OcppVersion.V201]


def test_cancel_on_a_charger_gone_offline_since_is_409(stack: Stack):
    """Cancel uses the remembered charger too: offline since is 409, not a command to a dead session."""
    reserve(stack, OWNER, reservation_id=1)
    stack.services.registry.register_disconnection(CHARGER_ID, f"s-{CHARGER_ID}", datetime.now(UTC))
    sent = len(stack.gateway.sent)
    with pytest.raises(ChargerOffline):
        stack.services.reservations.cancel(OWNER, CancelRequest(charger_id=CHARGER_ID, reservation_id=1))
    assert len(stack.gateway.sent) == sent
    connect(stack, CHARGER_ID)
    cancelled = stack.services.reservations.cancel(OWNER, CancelRequest(charger_id=CHARGER_ID, reservation_id=1))
    assert cancelled == "Accepted"


def test_a_failed_check_writes_nothing(stack: Stack):
    """The refused transaction leaves nothing behind: the request that follows from a fresh read is the one
    command sent, and the reservation record is that command's."""
    reserve(stack, OWNER, reservation_id=1)
    reconnect(stack, "s-new", QUEUE_URL)
    calls: list[int] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        calls.append(sum("ConditionCheck" in i for i in params["TransactItems"]))

    stack.dynamodb.meta.events.register("provide-client-params.dynamodb.TransactWriteItems", record)
    assert reserve(stack, OWNER, reservation_id=2) is ReserveStatus.ACCEPTED
    assert calls[:2] == [1, 0]  # the checked attempt, refused; then the one from a fresh read
    assert len(stack.gateway.sent) == 2
    assert stack.services.reservations.get(OWNER, 2).command_id == stack.gateway.sent[-1].command_id


def test_charger_cache_keeps_the_most_recently_used():
    cache = ChargerCache(max_entries=1)
    first, second = charger(1, 7, ()), charger(2, 7, ())
    cache.put(first)
    cache.put(second)
    assert (cache.get(1), cache.get(2), len(cache)) == (None, second, 1)


def test_a_queue_that_came_back_under_another_url_is_followed(stack: Stack):
    """The gateway writes its held connections again, same session, when its queue is created anew under
    another URL: the remembered queue fails the check and the command goes to the new one."""
    reserve(stack, OWNER, reservation_id=1)
    registry = stack.services.registry
    held = registry.get_charger(CHARGER_ID).connection  # type: ignore[union-attr]
    assert held is not None
    moved = "http://sqs.local/000000000000/evreserve-gw-i1-again"
    registry.register_connection(CHARGER_ID, held.model_copy(update={"queue_url": moved}))
    urls: list[str] = []
    send = stack.gateway.send_message

    def recording(QueueUrl: str, MessageBody: str) -> dict[str, Any]:
        urls.append(QueueUrl)
        return send(QueueUrl=QueueUrl, MessageBody=MessageBody)

    stack.gateway.send_message = recording  # type: ignore[method-assign]
    assert reserve(stack, OWNER, reservation_id=2) is ReserveStatus.ACCEPTED
    assert urls == [moved]


def test_a_failed_send_forgets_the_charger(stack: Stack, reads: list[str]):
    """SQS refusing the remembered queue: 503 for this request, and the next one reads the charger again."""
    reserve(stack, OWNER, reservation_id=1)
    send = stack.gateway.send_message

    def gone(QueueUrl: str, MessageBody: str) -> dict[str, Any]:
        raise ClientError({"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue"}}, "SendMessage")

    stack.gateway.send_message = gone  # type: ignore[method-assign]
    with pytest.raises(DependencyUnavailable):
        reserve(stack, OWNER, reservation_id=2)
    stack.gateway.send_message = send  # type: ignore[method-assign]
    reads.clear()
    assert reserve(stack, OWNER, reservation_id=2) is ReserveStatus.ACCEPTED
    assert [k for k in reads if k.startswith("CHARGER#")] == [f"CHARGER#{CHARGER_ID}"]


@pytest.mark.parametrize("change", ["deleted", "offline"])
def test_a_retry_on_a_charger_changed_since_answers_as_a_cold_instance(stack: Stack, change: str):
    """The same request again (its command recorded and answered) after the charger was deleted or went
    offline: the remembered charger's failed check stands before the recorded command, so the warm instance
    answers 404 / 409 as a cold one reads it, and sends nothing."""
    request = ReserveRequest.model_validate(
        {"portId": PORT_ID, "expiryDate": future(), "idTag": "RFID001", "reservationId": 7}
    ).to_domain()
    service = stack.services.reservations
    assert service.reserve(OWNER, request, "order-1") is ReserveStatus.ACCEPTED
    if change == "deleted":
        stack.services.chargers.delete(OWNER, CHARGER_ID)
    else:
        stack.services.registry.register_disconnection(CHARGER_ID, f"s-{CHARGER_ID}", datetime.now(UTC))
    sent = len(stack.gateway.sent)
    with pytest.raises(NotFound if change == "deleted" else ChargerOffline):
        service.reserve(OWNER, request, "order-1")
    assert len(stack.gateway.sent) == sent


def test_a_charger_being_changed_meanwhile_is_read_again_not_503(
    stack: Stack, reads: list[str], monkeypatch: pytest.MonkeyPatch
):
    """The check's item inside another transaction (an update of the charger being written): DynamoDB cancels
    the command's transaction with TransactionConflict at the check; the request reads the charger again and
    goes on, instead of answering 503."""
    reserve(stack, OWNER, reservation_id=1)
    real = commands_module.transact
    cancelled: list[list[str]] = []

    def conflict_once(client: Any, items: list[dict[str, Any]], service: str = "DynamoDB") -> None:
        if not cancelled and any("ConditionCheck" in item for item in items):
            reasons = ["TransactionConflict" if "ConditionCheck" in item else "None" for item in items]
            cancelled.append(reasons)
            raise DependencyUnavailable("DynamoDB cancelled the transaction", service=service, reasons=reasons)
        real(client, items, service)

    monkeypatch.setattr(commands_module, "transact", conflict_once)
    reads.clear()
    assert reserve(stack, OWNER, reservation_id=2) is ReserveStatus.ACCEPTED
    assert cancelled == [["None", "TransactionConflict", "None", "None"]]
    assert [k for k in reads if k.startswith("CHARGER#")] == [f"CHARGER#{CHARGER_ID}"]
