"""Commands from the API through the real channel (DynamoDB + SQS) to chargers held by real gateways."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import replace
from typing import Any

import pytest
from fixtures.gateway_fixtures import Behaviour, charger_session, wait_held, wait_until
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from evreserve.aws import sqs_client
from evreserve.channel import CommandEnvelope
from evreserve.errors import DependencyUnavailable
from evreserve.models import CommandAction, OcppVersion, OutcomeKind, ReservationRef, ReservationState
from evreserve.ocpp_mapping import reserve_now_payload
from evreserve_gateway import Dependencies, GatewaySettings
from evreserve_gateway.commands import InstanceQueue
from evreserve_gateway.commands import runner as runner_module

pytestmark = pytest.mark.integration

V16 = OcppVersion.V16
V201 = OcppVersion.V201


@pytest.mark.parametrize("version", [V16, V201])
async def test_command_is_answered(gateway, seed_charger, registry, commands, version):
    """A CancelReservation reaches the charger and its CALLRESULT is the stored outcome."""
    charger = seed_charger()
    behaviour = Behaviour(status="Accepted")
    async with charger_session(gateway, charger, version, behaviour):
        await wait_held(gateway, charger, registry)
        command = commands.command(charger, version)
        outcome = await commands.execute(command, gateway.queue_url)
    assert (outcome.kind, outcome.payload, outcome.completed_by) == (
        OutcomeKind.RESULT,
        {"status": "Accepted"},
        gateway.instance_id,
    )
    assert behaviour.received == [("CancelReservation", {"reservation_id": 7})]
    assert commands.ledger.get(command.command_id).outcome == outcome


def reserve_command(commands: Any, charger: Any, version: OcppVersion, reservation: Any) -> Any:
    """The ReserveNow the API would send for a stored Pending reservation (its port, or the whole charger)."""
    payload = reserve_now_payload(
        version,
        reservation_id=reservation.reservation_id,
        port_number=reservation.port_number,
        expiry_date=reservation.expiry_date,
        id_tag=reservation.id_tag,
    )
    return commands.command(charger, version, CommandAction.RESERVE_NOW, payload).model_copy(
        update={
            "command_id": reservation.command_id,
            "reservation": ReservationRef(account_id=reservation.account_id, reservation_id=reservation.reservation_id),
        }
    )


async def test_reserve_now_answer_updates_the_reservation(
    gateway, seed_charger, seed_reservation, registry, commands, reservation_store
):
    """A ReserveNow answered Accepted moves its Pending reservation to Accepted with the outcome."""
    charger = seed_charger()
    reservation = seed_reservation(charger, state=ReservationState.PENDING)
    async with charger_session(gateway, charger, V201):
        await wait_held(gateway, charger, registry)
        outcome = await commands.execute(reserve_command(commands, charger, V201, reservation), gateway.queue_url)
    assert outcome.kind is OutcomeKind.RESULT
    assert reservation_store.get(1, reservation.reservation_id).state is ReservationState.ACCEPTED


@pytest.mark.parametrize("version", [V16, V201])
async def test_a_whole_charger_reservation_takes_the_port_the_charger_marks_reserved(
    gateway, seed_charger, seed_reservation, registry, commands, reservation_store, version
):
    """ReserveNow for the whole charger (1.6 connectorId 0, 2.0.1 no evseId) is accepted; when the charger then
    marks port 2 Reserved, the record takes port 2 (its id and number) and stays Accepted."""
    charger = seed_charger()
    reservation = seed_reservation(charger, None, state=ReservationState.PENDING)
    async with charger_session(gateway, charger, version) as cp:
        await wait_held(gateway, charger, registry)
        outcome = await commands.execute(reserve_command(commands, charger, version, reservation), gateway.queue_url)
        assert outcome.payload == {"status": "Accepted"}
        sent = cp.behaviour.received[-1][1]
        assert sent.get("connector_id", 0) == 0 and "evse_id" not in sent
        await _report(cp, version, 2, "Reserved")

    def placed() -> Any:
        record = reservation_store.get(1, reservation.reservation_id)
        return record if record.port_number is not None else None

    record = await wait_until(placed, what="the reservation's port")
    assert (record.port_id, record.port_number, record.state) == (
        charger.port_by_number(2).id,
        2,
        ReservationState.ACCEPTED,
    )


@pytest.mark.parametrize("version", [V16, V201])
async def test_a_whole_charger_reservation_used_on_a_port_records_that_port(
    gateway, seed_charger, seed_reservation, registry, reservation_store, version
):
    """The transaction that uses a whole-charger reservation names the port: the record ends Used on it."""
    charger = seed_charger()
    reservation = seed_reservation(charger, None)
    async with charger_session(gateway, charger, version) as cp:
        await wait_held(gateway, charger, registry)
        if version is V16:
            await cp.call(
                call16.StartTransaction(
                    connector_id=2,
                    id_tag="TAG-1",
                    meter_start=0,
                    timestamp="2030-01-01T00:00:00Z",
                    reservation_id=reservation.reservation_id,
                )
            )
        else:
            await cp.call(
                call201.TransactionEvent(
                    event_type="Started",
                    timestamp="2030-01-01T00:00:00Z",
                    trigger_reason="Authorized",
                    seq_no=0,
                    transaction_info={"transaction_id": "tx-w"},
                    evse={"id": 2, "connector_id": 1},
                    reservation_id=reservation.reservation_id,
                )
            )
    record = await wait_until(
        lambda: (r := reservation_store.get(1, reservation.reservation_id)).state is ReservationState.USED and r,
        what="Used",
    )
    assert (record.port_id, record.port_number) == (charger.port_by_number(2).id, 2)


async def _report(cp: Any, version: OcppVersion, port: int, status: str) -> None:
    if version is V16:
        await cp.call(call16.StatusNotification(connector_id=port, error_code="NoError", status=status))
    else:
        await cp.call(
            call201.StatusNotification(
                timestamp="2030-01-01T00:00:00Z", connector_status=status, evse_id=port, connector_id=1
            )
        )


async def test_call_error_is_the_outcome(gateway, seed_charger, registry, commands):
    """A charger's CALLERROR is stored with its code and description."""
    charger = seed_charger()
    async with charger_session(gateway, charger, V16, Behaviour(mode="call_error")):
        await wait_held(gateway, charger, registry)
        outcome = await commands.execute(commands.command(charger, V16), gateway.queue_url)
    assert (outcome.kind, outcome.error_code, outcome.error_description) == (
        OutcomeKind.CALL_ERROR,
        "NotSupported",
        "reservations are disabled",
    )


async def test_silent_charger_times_out(gateway, seed_charger, registry, commands):
    """A charger that never answers gives a timeout outcome at the command's deadline."""
    charger = seed_charger()
    async with charger_session(gateway, charger, V16, Behaviour(mode="silent")):
        await wait_held(gateway, charger, registry)
        command = commands.command(charger, V16, timeout_s=1.0)
        outcome = await commands.execute(command, gateway.queue_url)
    assert (outcome.kind, outcome.completed_by) == (OutcomeKind.TIMEOUT, gateway.instance_id)


async def test_charger_not_held_is_offline(gateway, seed_charger, commands):
    """A command for a charger this instance does not hold is not sent and ends offline at once."""
    charger = seed_charger()
    started = time.monotonic()
    outcome = await commands.execute(commands.command(charger, V16), gateway.queue_url)
    assert (outcome.kind, outcome.completed_by) == (OutcomeKind.OFFLINE, gateway.instance_id)
    assert time.monotonic() - started < 2


async def test_charger_leaving_mid_call_is_offline_at_once(gateway, seed_charger, registry, commands):
    """A charger closing its socket instead of answering ends the command offline without waiting out the timeout."""
    charger = seed_charger()
    async with charger_session(gateway, charger, V16, Behaviour(mode="vanish")):
        await wait_held(gateway, charger, registry)
        started = time.monotonic()
        outcome = await commands.execute(commands.command(charger, V16, timeout_s=10.0), gateway.queue_url)
    assert outcome.kind is OutcomeKind.OFFLINE
    assert time.monotonic() - started < 5


async def test_expired_command_is_not_sent(gateway, seed_charger, registry, commands):
    """A command that reaches the gateway after its deadline is recorded expired and never sent."""
    charger = seed_charger()
    behaviour = Behaviour()
    async with charger_session(gateway, charger, V16, behaviour):
        await wait_held(gateway, charger, registry)
        command = commands.command(charger, V16, timeout_s=-1.0)
        await asyncio.to_thread(commands.channel.submit, command)
        await asyncio.to_thread(commands.channel.send, command, gateway.queue_url)
        stored = await wait_until(lambda: commands.ledger.get(command.command_id).outcome, what="outcome")
    assert (stored.kind, stored.completed_by) == (OutcomeKind.EXPIRED, gateway.instance_id)
    assert behaviour.received == []


async def test_duplicate_delivery_is_sent_once(gateway, seed_charger, registry, commands, gateway_clients):
    """The same envelope delivered twice reaches the charger once and has one outcome."""
    charger = seed_charger()
    behaviour = Behaviour()
    async with charger_session(gateway, charger, V16, behaviour):
        await wait_held(gateway, charger, registry)
        command = commands.command(charger, V16)
        body = CommandEnvelope(command=command).to_json()
        await asyncio.to_thread(commands.channel.submit, command)
        for _ in range(2):
            await asyncio.to_thread(gateway_clients.sqs.send_message, QueueUrl=gateway.queue_url, MessageBody=body)
        outcome = await asyncio.to_thread(commands.channel.wait, command)
        await asyncio.sleep(0.5)  # room for the second delivery to be (not) sent
    assert outcome.kind is OutcomeKind.RESULT
    assert len(behaviour.received) == 1


class FailingLedger:
    """The gateway's ledger, refusing its first ``failures`` outcome writes as DynamoDB would when down."""

    def __init__(self, inner: Any, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    def complete(self, command: Any, outcome: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise DependencyUnavailable("DynamoDB is down")
        return self.inner.complete(command, outcome)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_an_outcome_not_stored_is_written_again_later(
    start_gateway, seed_charger, registry, commands, monkeypatch
):
    """GIVEN storage refusing the outcome through the gateway's quick retries (and no spool)
    WHEN the gateway writes it again a second later THEN the outcome is stored, the charger got
    the command once, and no SQS request was needed for it."""
    monkeypatch.setattr(runner_module, "WRITE_RETRIES_S", (0.05,))
    monkeypatch.setattr(runner_module, "REWRITE_AFTER_S", (1.0,))
    ledger: FailingLedger | None = None

    def failing(deps: Dependencies) -> Dependencies:
        nonlocal ledger
        ledger = FailingLedger(deps.ledger, failures=2)
        return replace(deps, ledger=ledger, spool=None)

    gateway = await start_gateway(inject=failing)
    charger = seed_charger()
    behaviour = Behaviour()
    async with charger_session(gateway, charger, V16, behaviour):
        await wait_held(gateway, charger, registry)
        command = commands.command(charger, V16)
        outcome = await commands.execute(command, gateway.queue_url)
    assert ledger is not None and ledger.failures == 0
    assert (outcome.kind, outcome.completed_by) == (OutcomeKind.RESULT, gateway.instance_id)
    assert behaviour.received == [("CancelReservation", {"reservation_id": 7})]


async def test_an_unreadable_message_reaches_the_dlq(start_gateway, gateway_clients):
    """GIVEN a gateway whose queue redrives to a DLQ after 2 receives WHEN a message it cannot read
    arrives THEN it shows it again at once until SQS moves it to the DLQ (it does not just expire)."""
    sqs = gateway_clients.sqs
    dlq_url = (await asyncio.to_thread(sqs.create_queue, QueueName=f"test-dlq-{uuid.uuid4().hex[:12]}"))["QueueUrl"]
    try:
        gateway = await start_gateway(command_dlq_url=dlq_url, gateway_queue_max_receive_count=2)
        await asyncio.to_thread(sqs.send_message, QueueUrl=gateway.queue_url, MessageBody="not a command")

        def in_dlq() -> list[str]:
            answer = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            return [m["Body"] for m in answer.get("Messages", [])]

        bodies = await wait_until(in_dlq, what="the unreadable message in the DLQ")
    finally:
        await asyncio.to_thread(sqs.delete_queue, QueueUrl=dlq_url)
    assert bodies == ["not a command"]


async def test_a_handled_command_costs_its_gateway_one_sqs_request(
    start_gateway, seed_charger, registry, commands, gateway_clients
):
    """GIVEN a command queued for a gateway WHEN the charger answers and the outcome is stored
    THEN the gateway made one SQS request for it (the receive): the handled message is not
    deleted but left to expire, hidden until then, so Send + Receive is the channel's cost."""
    calls: list[tuple[str, int]] = []

    def counted(deps: Dependencies) -> Dependencies:
        # A client of the gateway's own, so that the test's requests are not counted.
        sqs = sqs_client(GatewaySettings(aws_read_timeout_s=10.0))
        send = sqs._send  # type: ignore[attr-defined]

        def count(body: bytes, target: str) -> Any:
            answer = send(body, target)
            calls.append((target.rsplit(".", 1)[1], len(json.loads(answer.body or b"{}").get("Messages", []))))
            return answer

        sqs._send = count  # type: ignore[attr-defined]
        return replace(deps, queue=InstanceQueue(sqs, deps.queue.name), poll_queue=InstanceQueue(sqs, deps.queue.name))

    gateway = await start_gateway(inject=counted)
    charger = seed_charger()
    async with charger_session(gateway, charger, V16, Behaviour()):
        await wait_held(gateway, charger, registry)
        calls.clear()
        outcome = await commands.execute(commands.command(charger, V16), gateway.queue_url)
        await asyncio.sleep(1.5)  # longer than any deletion would linger
        attributes = (
            await asyncio.to_thread(
                gateway_clients.sqs.get_queue_attributes,
                QueueUrl=gateway.queue_url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "MessageRetentionPeriod",
                    "VisibilityTimeout",
                ],
            )
        )["Attributes"]
    assert outcome.kind is OutcomeKind.RESULT
    assert [call for call in calls if call != ("ReceiveMessage", 0)] == [("ReceiveMessage", 1)]
    assert (attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"]) == (
        "0",
        "1",
    )
    assert int(attributes["VisibilityTimeout"]) > int(attributes["MessageRetentionPeriod"])


async def test_silent_charger_delays_only_itself(gateway, seed_charger, registry, commands):
    """While one charger stays silent, a command to another charger completes at once."""
    silent, quick = seed_charger(), seed_charger()
    async with (
        charger_session(gateway, silent, V16, Behaviour(mode="silent")),
        charger_session(gateway, quick, V201),
    ):
        await wait_held(gateway, silent, registry)
        await wait_held(gateway, quick, registry)
        stuck = asyncio.create_task(commands.execute(commands.command(silent, V16, timeout_s=2.0), gateway.queue_url))
        started = time.monotonic()
        outcome = await commands.execute(commands.command(quick, V201), gateway.queue_url)
        assert outcome.kind is OutcomeKind.RESULT
        assert time.monotonic() - started < 1.5
        assert (await stuck).kind is OutcomeKind.TIMEOUT


async def test_two_instances_route_to_the_right_charger(start_gateway, seed_charger, registry, commands):
    """Two gateways each hold a charger; a command sent to the queue in a charger's record reaches it."""
    first, second = await start_gateway(), await start_gateway()
    on_first, on_second = seed_charger(), seed_charger()
    behaviour_first, behaviour_second = Behaviour(), Behaviour()
    async with (
        charger_session(first, on_first, V16, behaviour_first),
        charger_session(second, on_second, V201, behaviour_second),
    ):
        await wait_held(first, on_first, registry)
        await wait_held(second, on_second, registry)
        for charger, version in ((on_first, V16), (on_second, V201)):
            queue_url = registry.get_charger(charger.id).connection.queue_url
            outcome = await commands.execute(commands.command(charger, version), queue_url)
            assert outcome.kind is OutcomeKind.RESULT
    assert (len(behaviour_first.received), len(behaviour_second.received)) == (1, 1)
    assert registry.get_charger(on_first.id).connection.instance_id == first.instance_id
    assert registry.get_charger(on_second.id).connection.instance_id == second.instance_id


async def test_command_follows_a_charger_that_moved(start_gateway, seed_charger, registry, commands):
    """After a charger reconnects to another instance, commands reach it there; the old instance answers offline."""
    first, second = await start_gateway(), await start_gateway()
    charger = seed_charger()
    async with charger_session(first, charger, V16):
        await wait_held(first, charger, registry)
    behaviour = Behaviour()
    async with charger_session(second, charger, V16, behaviour):
        await wait_held(second, charger, registry)
        queue_url = registry.get_charger(charger.id).connection.queue_url
        assert queue_url == second.queue_url
        outcome = await commands.execute(commands.command(charger, V16), queue_url)
        assert (outcome.kind, outcome.completed_by) == (OutcomeKind.RESULT, second.instance_id)
        stale = await commands.execute(commands.command(charger, V16), first.queue_url)
        assert (stale.kind, stale.completed_by) == (OutcomeKind.OFFLINE, first.instance_id)
    assert len(behaviour.received) == 1
