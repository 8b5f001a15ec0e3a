"""Answers that stay true under faults: each test reproduces a defect on the real local stack.

DynamoDB Local, the SQS server and real gateways (in-process on 127.0.0.1:0, or as
processes where a kill is part of the fault); the stack and its fixtures are
``test_faults``'s.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
import test_faults
from botocore.exceptions import ClientError
from fixtures.gateway_fixtures import Behaviour, charger_session, wait_until
from test_faults import Stack, wait_registered

from devstack.gateways import GatewayProcess, free_port
from evreserve import lifecycle
from evreserve.channel import CommandEnvelope
from evreserve.errors import ChargerOffline, DependencyUnavailable
from evreserve.models import (
    ApiKey,
    Command,
    CommandOutcome,
    ConnectionState,
    OcppVersion,
    OutcomeKind,
    ReservationState,
    utcnow,
)
from evreserve.requests import ReserveRequest
from evreserve.services.bootstrap import build_services
from evreserve.services.principal import Principal
from evreserve.storage import keys
from evreserve.storage.codec import to_item
from evreserve.storage.commands import CommandLedger
from evreserve.storage.instances import InstanceStore, Lease
from evreserve.storage.items import reservation_item

V16, V201 = OcppVersion.V16, OcppVersion.V201

# The faults module's own servers and gateways (a module-scoped stack of this module's own).
fault_aws = test_faults.fault_aws
stack = test_faults.stack
start_gateway = test_faults.start_gateway


@pytest.mark.parametrize("version", [V16, V201])
async def test_late_answer_of_a_retried_reservation_is_not_undone(stack: Stack, start_gateway, version):
    """Defect 1: ReserveNow C2 for reservationId R times out; the retry C3 for R is accepted and recorded;
    C2's late Accepted then arrives. The charger must keep R (no CancelReservation), as the record says."""
    gateway = await start_gateway()
    charger = stack.seed_charger()
    first = stack.seed_pending_reservation(charger)
    behaviour = Behaviour(mode="late", delay_s=2.0)
    async with charger_session(gateway, charger, version, behaviour):
        await wait_registered(stack, charger, gateway.instance_id)
        c2 = stack.command(charger, version, timeout_s=1.0, reservation=first)
        outcome = await stack.execute(c2, gateway.queue_url)
        assert outcome.kind is OutcomeKind.TIMEOUT
        assert stack.reservation_state(first) is ReservationState.FAILED
        behaviour.delay_s = 0.0  # the charger answers the retry at once, once it is done with C2

        # The partner retries: the service records a new Pending reservation for R, owned by C3.
        now = utcnow()
        retry = first.model_copy(update={"command_id": "c3-" + c2.command_id, "created_at": now, "updated_at": now})
        stack.reservations._client.put_item(TableName=stack.reservations.table, Item=to_item(reservation_item(retry)))
        c3 = stack.command(charger, version, timeout_s=6.0, reservation=retry)
        outcome = await stack.execute(c3, gateway.queue_url)
        assert (outcome.kind, outcome.payload) == (OutcomeKind.RESULT, {"status": "Accepted"})
        assert stack.reservation_state(retry) is ReservationState.ACCEPTED
        # C2's late Accepted came before C3's answer; give an undo every chance to show up.
        await asyncio.sleep(1.5)
        assert [action for action, _ in behaviour.received] == ["ReserveNow", "ReserveNow"]
    assert stack.reservation_state(retry) is ReservationState.ACCEPTED


async def test_a_recreated_command_is_sent_again(stack: Stack, start_gateway):
    """Defect 3: a command whose record was re-created (after ``not_sent``, or its TTL) under the same
    id is a new command: the gateway sends it and writes its outcome instead of dropping a "duplicate"."""
    gateway = await start_gateway()
    charger = stack.seed_charger()
    behaviour = Behaviour()
    async with charger_session(gateway, charger, V16, behaviour):
        await wait_registered(stack, charger, gateway.instance_id)
        first = stack.command(charger, V16)
        # An ambiguous SendMessage: the message went out, but the API saw a failure and recorded not_sent
        # (recorded first here, so that the gateway's own outcome for this copy cannot land before it).
        await asyncio.to_thread(stack.channel.submit, first)
        await asyncio.to_thread(
            stack.ledger.complete,
            first,
            CommandOutcome(kind=OutcomeKind.NOT_SENT, completed_at=utcnow(), completed_by="api"),
        )
        body = CommandEnvelope(command=first).to_json()
        await asyncio.to_thread(stack.sqs.send_message, QueueUrl=gateway.queue_url, MessageBody=body)
        await wait_until(lambda: len(behaviour.received) == 1, 5, what="the first copy to reach the charger")

        # The partner's retry re-creates the command under the same id, a moment later.
        later = utcnow()
        again = first.model_copy(update={"created_at": later, "deadline": later + timedelta(seconds=3)})
        outcome = await stack.execute(again, gateway.queue_url)
    assert (outcome.kind, outcome.completed_by) == (OutcomeKind.RESULT, gateway.instance_id)
    assert len(behaviour.received) == 2


async def test_a_killed_gateways_chargers_show_disconnected(stack: Stack, start_gateway, tmp_path):
    """Defect 4: SIGKILL an instance whose charger never comes back. Once its lease lapses, another
    instance marks the charger Disconnected (so a reserve answers 409 CHARGER_OFFLINE at once, not a
    504 after its deadline) and deletes the orphaned queue."""
    lease = {"GATEWAY_LEASE_S": "2", "GATEWAY_LEASE_RENEW_S": "0.5"}
    env = {**os.environ, **stack.aws.env(), "GATEWAY_QUEUE_WAIT_S": "1", "LOG_LEVEL": "INFO", **lease}
    process = GatewayProcess(f"k{os.urandom(4).hex()}", free_port(), tmp_path / "gateway.log")
    process.start(env)
    try:
        await start_gateway(gateway_lease_s=2.0, gateway_lease_renew_s=0.5)  # the survivor, which reaps
        await asyncio.to_thread(process.wait_healthy)
        charger = stack.seed_charger()
        async with charger_session(test_faults._At(process.port), charger, V16, Behaviour()):  # type: ignore[arg-type]
            await wait_registered(stack, charger, process.instance_id)
            queue_url = stack.queue_url_of(charger)
            process.kill()
            killed = time.monotonic()
        # The charger does not come back; the registry must stop calling it Connected.
        await wait_until(
            lambda: not stack.registry.get_charger(charger.id).is_connected, 15, what="the charger to be released"
        )
        # Lease (2 s) + one beat (0.5 s) + a beat of the survivor, with room for a loaded machine.
        assert time.monotonic() - killed < 8
        stored = stack.registry.get_charger(charger.id)
        assert stored.connection.state is ConnectionState.DISCONNECTED
        assert stored.connection.instance_id == process.instance_id

        def queue_gone() -> bool:
            try:
                stack.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
            except ClientError:
                return True
            return False

        await wait_until(queue_gone, 5, what="the orphaned queue to be deleted")

        # A partner's reserve for that charger is now a 409 CHARGER_OFFLINE at once, not a 504 at 22 s.
        services = build_services(stack.settings, dynamodb=stack.reservations._client, sqs=stack.sqs)
        owner = Principal.of(
            ApiKey(key_id="k", key_hash="h", name="t", account_id=charger.account_id, created_at=utcnow())
        )
        request = ReserveRequest(
            port_id=charger.ports[0].id, expiry_date=utcnow() + timedelta(hours=1), id_tag="T", reservation_id=5
        )
        asked = time.monotonic()
        with pytest.raises(ChargerOffline):
            await asyncio.to_thread(services.reservations.reserve, owner, request)
        assert time.monotonic() - asked < 5
    finally:
        process.kill()


async def test_a_live_charger_on_another_instance_is_not_released(stack: Stack, start_gateway):
    """Reaping a lapsed lease leaves alone a charger that reconnected to a live instance."""
    live = await start_gateway(gateway_lease_s=2.0, gateway_lease_renew_s=0.5)
    charger = stack.seed_charger()
    async with charger_session(live, charger, V16, Behaviour()):
        await wait_registered(stack, charger, live.instance_id)
        # A dead instance's lease, long lapsed, that never held this charger.
        dead = Lease("dead-" + os.urandom(3).hex(), "http://127.0.0.1:1/queue/none", 1)
        await asyncio.to_thread(InstanceStore(stack.registry._client, stack.registry.table).renew, dead)
        await wait_until(
            lambda: (
                dead.instance_id
                not in {x.instance_id for x in InstanceStore(stack.registry._client, stack.registry.table).leases()}
            ),
            5,
            what="the dead lease to be reaped",
        )
        assert stack.registry.get_charger(charger.id).is_connected


class FlakyLedger(CommandLedger):
    """A gateway's ledger that cannot write while ``down`` (DynamoDB out, for this instance)."""

    down = True

    def complete(self, command: Command, outcome: CommandOutcome) -> CommandOutcome:
        if self.down:
            raise DependencyUnavailable("DynamoDB is unreachable")
        return super().complete(command, outcome)


async def test_an_outcome_given_during_an_outage_is_stored_once_storage_is_back(stack: Stack, start_gateway):
    """Defect 2: the charger answers while DynamoDB is out, and the instance that heard it drains away
    before storage is back. The answer is not lost: it waits in the spool and another instance stores
    it (the reservation reads Failed past its answer-by time meanwhile; then the real outcome)."""
    flaky = FlakyLedger(stack.ledger._client, stack.settings.commands_table, stack.settings.reservations_table)
    first = await start_gateway(inject=lambda deps: replace(deps, ledger=flaky))
    charger = stack.seed_charger()
    reservation = stack.seed_pending_reservation(charger)
    behaviour = Behaviour()
    spool_url = stack.aws.env()["OUTCOME_SPOOL_URL"]

    def spooled() -> int:
        attributes = stack.sqs.get_queue_attributes(QueueUrl=spool_url, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"
        ]
        return int(attributes["ApproximateNumberOfMessages"])

    async with charger_session(first, charger, V16, behaviour):
        await wait_registered(stack, charger, first.instance_id)
        command = stack.command(charger, V16, timeout_s=3.0, reservation=reservation)
        await asyncio.to_thread(stack.channel.submit, command)
        await asyncio.to_thread(stack.channel.send, command, first.queue_url)
        await wait_until(spooled, 10, what="the unwritable outcome to reach the spool")
    await first.stop()  # drained: nothing of the answer is left in that process
    assert stack.ledger.get(command.command_id).outcome is None
    assert stack.reservation_state(reservation) is ReservationState.PENDING

    second = await start_gateway()  # storage is back (its ledger is the real one)

    def stored() -> CommandOutcome | None:
        found = stack.ledger.get(command.command_id)
        return found.outcome if found is not None else None

    outcome = await wait_until(stored, 15, what="the spooled outcome to be stored")
    assert (outcome.kind, outcome.payload, outcome.completed_by) == (
        OutcomeKind.RESULT,
        {"status": "Accepted"},
        first.instance_id,
    )
    assert stack.reservation_state(reservation) is ReservationState.ACCEPTED
    await wait_until(lambda: spooled() == 0, 10, what="the spool to be emptied")
    assert second.instance_id != first.instance_id


async def test_authorize_and_status_read_only_the_active_reservations(stack: Stack) -> None:
    """Defect 8: the gateway's view of a charger's reservations (Authorize, port status) reads the
    active ones only, however many ended ones the charger has; every record carries its TTL
    (retention after its expiryDate)."""
    charger = stack.seed_charger()
    seeded = [stack.seed_pending_reservation(charger) for _ in range(6)]
    created = utcnow()
    for index, reservation in enumerate(seeded):
        # As the service writes them: through create_request, with their TTL.
        record = reservation.model_copy(update={"state": ReservationState.PENDING})
        put = stack.reservations.create_request(record, now=created, pending_stale_before=created)
        stack.reservations._client.transact_write_items(TransactItems=[put])  # the same port: a replacement
        if index < 5:  # five of them end (cancelled), one stays active
            transition = lifecycle.cancel_answered(
                CommandOutcome(
                    kind=OutcomeKind.RESULT, payload={"status": "Accepted"}, completed_at=created, completed_by="api"
                )
            )
            assert transition is not None
            assert stack.reservations.transition(charger.account_id, reservation.reservation_id, transition, created)
    scanned: list[int] = []

    def count(parsed: Any, **_kwargs: Any) -> None:
        scanned.append(int(parsed.get("ScannedCount", 0)))

    stack.reservations._client.meta.events.register("after-call.dynamodb.Query", count)
    try:
        active = stack.reservations.active_for_charger(charger.id)
    finally:
        stack.reservations._client.meta.events.unregister("after-call.dynamodb.Query", count)
    assert [r.reservation_id for r in active] == [seeded[5].reservation_id]
    assert scanned == [1]  # the ended five were never read
    item = stack.reservations._client.get_item(
        TableName=stack.reservations.table, Key=keys.reservation(charger.account_id, seeded[0].reservation_id)
    )["Item"]
    retention = timedelta(days=stack.reservations.retention_days)
    assert int(item["ttl"]["N"]) == int((seeded[0].expiry_date + retention).timestamp())
