"""Faults injected into a running system: storage and queue servers restarted, a gateway killed mid-command,
the API's waiter giving up mid-wait, a charger answering after the deadline, duplicate deliveries.

Every scenario checks the same promises: each request ends with its documented answer (a
definite error during an outage, ``timeout`` when nobody can answer), no command reaches a
charger twice, no reservation record contradicts the charger, and the system recovers
without a manual step. These tests stop and restart servers, so they run on a LocalAws of
their own, never the session's shared one.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
from fixtures.channel import execute
from fixtures.gateway_fixtures import PASSWORD, Behaviour, charger_session, wait_until
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from devstack import REPO_ROOT, client_config
from devstack.gateways import GatewayProcess, free_port
from devstack.localaws import LocalAws
from evreserve.channel import CommandChannel, CommandEnvelope
from evreserve.errors import DependencyUnavailable
from evreserve.models import (
    Charger,
    Command,
    CommandAction,
    CommandOutcome,
    OcppVersion,
    OutcomeKind,
    Port,
    Reservation,
    ReservationRef,
    ReservationState,
    utcnow,
)
from evreserve.ocpp_mapping import reserve_now_payload
from evreserve.security import hash_password
from evreserve.storage.codec import to_item
from evreserve.storage.commands import CommandLedger
from evreserve.storage.items import reservation_item
from evreserve.storage.registry import RegistryStore
from evreserve.storage.reservations import ReservationStore
from evreserve_gateway import Dependencies, Gateway, GatewaySettings, bootstrap

pytestmark = pytest.mark.integration

V16, V201 = OcppVersion.V16, OcppVersion.V201
_PASSWORD_HASH = hash_password(PASSWORD)
#: Faults injected by this module, for the report (printed with ``-s``).
FAULTS: list[str] = []


@pytest.fixture(scope="module")
def fault_aws() -> Iterator[LocalAws]:
    """DynamoDB Local and SQS of this module alone: its tests stop and restart them."""
    log_dir = REPO_ROOT / ".cache" / "test-logs" / f"faults-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    with LocalAws(prefix=f"f{os.getpid()}", log_dir=log_dir) as aws:
        yield aws
    print(f"\nfaults injected: {len(FAULTS)}: {FAULTS}")


@dataclass
class Stack:
    """The API's side (ledger, channel) and the stores, on the module's servers."""

    aws: LocalAws
    settings: GatewaySettings
    registry: RegistryStore
    reservations: ReservationStore
    ledger: CommandLedger
    channel: CommandChannel
    sqs: Any

    def gateway_settings(self, **overrides: Any) -> GatewaySettings:
        return self.settings.model_copy(update={"instance_id": f"f{os.urandom(5).hex()}", **overrides})

    @staticmethod
    def new_id() -> int:
        # Not the registry's counters: a restarted DynamoDB Local starts them over.
        return int.from_bytes(os.urandom(3)) + 1_000_000

    def seed_charger(self) -> Charger:
        charger_id = self.new_id()
        now = utcnow()
        charger = Charger(
            id=charger_id,
            account_id=1,
            ocpp_id=f"FC-{charger_id}-{os.urandom(3).hex()}",
            password_hash=_PASSWORD_HASH,
            ports=tuple(Port(id=self.new_id(), port_number=n) for n in (1, 2)),
            created_at=now,
            updated_at=now,
        )
        self.registry.create_charger(charger)
        return charger

    def seed_pending_reservation(self, charger: Charger) -> Reservation:
        now = utcnow()
        reservation = Reservation(
            account_id=charger.account_id,
            reservation_id=self.new_id(),
            charger_id=charger.id,
            port_id=charger.ports[0].id,
            port_number=1,
            id_tag="TAG-1",
            expiry_date=now + timedelta(hours=1),
            state=ReservationState.PENDING,
            created_at=now,
            updated_at=now,
            command_id=os.urandom(8).hex(),
        )
        self.reservations._client.put_item(
            TableName=self.reservations.table, Item=to_item(reservation_item(reservation))
        )
        return reservation

    def command(
        self,
        charger: Charger,
        version: OcppVersion,
        *,
        timeout_s: float | None = None,
        reservation: Reservation | None = None,
    ) -> Command:
        now = utcnow()
        action, payload, ref = CommandAction.CANCEL_RESERVATION, {"reservationId": 7}, None
        command_id = os.urandom(8).hex()
        if reservation is not None:
            action = CommandAction.RESERVE_NOW
            payload = reserve_now_payload(
                version,
                reservation_id=reservation.reservation_id,
                port_number=1,
                expiry_date=reservation.expiry_date,
                id_tag=reservation.id_tag,
            )
            ref = ReservationRef(account_id=reservation.account_id, reservation_id=reservation.reservation_id)
            command_id = reservation.command_id
        return Command(
            command_id=command_id,
            account_id=charger.account_id,
            charger_id=charger.id,
            ocpp_id=charger.ocpp_id,
            ocpp_version=version,
            action=action,
            payload=payload,
            reservation=ref,
            instance_id="-",
            session_id="-",
            created_at=now,
            deadline=now + timedelta(seconds=timeout_s or self.settings.command_timeout_s),
            request_hash=os.urandom(4).hex(),
        )

    async def execute(self, command: Command, queue_url: str) -> CommandOutcome:
        return await asyncio.to_thread(execute, self.channel, command, queue_url)

    def queue_url_of(self, charger: Charger) -> str:
        stored = self.registry.get_charger(charger.id)
        assert stored is not None and stored.connection is not None
        return stored.connection.queue_url

    def reservation_state(self, reservation: Reservation) -> ReservationState:
        stored = self.reservations.get(reservation.account_id, reservation.reservation_id)
        assert stored is not None
        return stored.state


@pytest.fixture
def stack(fault_aws: LocalAws) -> Stack:
    env = fault_aws.env()
    settings = GatewaySettings(
        registry_table=env["REGISTRY_TABLE"],
        reservations_table=env["RESERVATIONS_TABLE"],
        commands_table=env["COMMANDS_TABLE"],
        # Given, not left to the environment: the module must run alone too.
        ocpp_messages_table=env["OCPP_MESSAGES_TABLE"],
        gateway_queue_prefix=env["GATEWAY_QUEUE_PREFIX"],
        command_dlq_url=env.get("COMMAND_DLQ_URL"),
        outcome_spool_url=env.get("OUTCOME_SPOOL_URL"),
        gateway_port=0,
        gateway_queue_wait_s=1,
        gateway_drain_timeout_s=0.5,
        gateway_storage_probe_s=0.2,
        command_timeout_s=3.0,
        command_grace_s=1.0,
    )
    # One attempt, 1 s to connect: a stopped server fails a call at once.
    dynamodb, sqs = fault_aws.dynamodb.client(client_config()), fault_aws.sqs.client(client_config())
    ledger = CommandLedger(dynamodb, settings.commands_table, settings.reservations_table)
    return Stack(
        fault_aws,
        settings,
        RegistryStore(dynamodb, settings.registry_table),
        ReservationStore(dynamodb, settings.reservations_table),
        ledger,
        CommandChannel(ledger, sqs, settings),
        sqs,
    )


class FlakyRegistry(RegistryStore):
    """A gateway's registry that fails on cue: its charger reads while ``restoring``, its disconnection
    writes while ``disconnections_down``."""

    restoring = False
    disconnections_down = False

    def inject(self, deps: Dependencies) -> Dependencies:
        return replace(deps, registry=self)

    def get_charger(self, charger_id: int) -> Charger | None:
        if self.restoring:
            raise DependencyUnavailable("still restoring")
        return super().get_charger(charger_id)

    def register_disconnection(self, *args: Any) -> Any:
        if self.disconnections_down:
            raise DependencyUnavailable("DynamoDB is unreachable")
        return super().register_disconnection(*args)


@pytest.fixture
def flaky_registry(stack: Stack) -> FlakyRegistry:
    return FlakyRegistry(stack.aws.dynamodb.client(client_config()), stack.settings.registry_table)


@pytest.fixture
async def start_gateway(stack: Stack) -> AsyncIterator[Callable[..., Awaitable[Gateway]]]:
    started: list[Gateway] = []

    async def start(*, inject: Callable[[Dependencies], Dependencies] | None = None, **overrides: Any) -> Gateway:
        aws = stack.aws
        settings = stack.gateway_settings(**overrides)
        deps = bootstrap(
            settings,
            dynamodb=aws.dynamodb.client(client_config()),
            sqs=aws.sqs.client(client_config()),
        )
        gateway = Gateway(settings, inject(deps) if inject is not None else deps)
        await gateway.start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        await gateway.stop()


async def wait_registered(stack: Stack, charger: Charger, instance_id: str, limit_s: float = 10.0) -> None:
    def registered() -> bool:
        try:
            stored = stack.registry.get_charger(charger.id)
        except Exception:
            return False
        return (
            stored is not None
            and stored.is_connected
            and stored.connection is not None
            and stored.connection.instance_id == instance_id
        )

    await wait_until(registered, limit_s, what=f"{charger.ocpp_id} registered on {instance_id}")


@dataclass
class _At:
    """Stands in for a Gateway where only the port is known (a child process)."""

    port: int


# -- DynamoDB ------------------------------------------------------------------------------------


async def test_dynamodb_restart_mid_run(stack, start_gateway, flaky_registry):
    """During a DynamoDB outage commands and new chargers get definite errors; afterwards the gateway
    registers its chargers again by itself and commands succeed."""
    gateway = await start_gateway(inject=flaky_registry.inject)
    charger = stack.seed_charger()
    behaviour = Behaviour()
    async with charger_session(gateway, charger, V16, behaviour) as cp:
        await wait_registered(stack, charger, gateway.instance_id)
        queue_url = gateway.queue_url

        stack.aws.stop_dynamodb()
        FAULTS.append("DynamoDB stopped and restarted")
        await wait_until(lambda: not gateway.storage_ok, 5, what="the gateway to notice the outage")
        started = time.monotonic()
        with pytest.raises(DependencyUnavailable):
            await stack.execute(stack.command(charger, V16), queue_url)
        assert time.monotonic() - started < 5
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                f"ws://x:{PASSWORD}@127.0.0.1:{gateway.port}/ocpp/FC-NEW",
                subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            ):
                pass
        assert refused.value.response.status_code == 503
        from ocpp.v16 import call as call16

        assert (await asyncio.wait_for(cp.call(call16.Heartbeat()), 5)).current_time  # still served

        # DynamoDB Local comes back empty; a real table would still hold the charger, so
        # it is restored before the gateway may see the storage again.
        flaky_registry.restoring = True
        await asyncio.to_thread(stack.aws.start_dynamodb)
        stack.registry.create_charger(charger)
        flaky_registry.restoring = False

        await wait_until(lambda: gateway.storage_ok, 10, what="the gateway to register again")
        await wait_registered(stack, charger, gateway.instance_id)
        outcome = await stack.execute(stack.command(charger, V16), stack.queue_url_of(charger))
    assert outcome.kind is OutcomeKind.RESULT
    assert len(behaviour.received) == 1


async def test_disconnection_during_dynamodb_outage_is_recorded_afterwards(stack, start_gateway, flaky_registry):
    """A charger leaving while DynamoDB is unreachable is recorded disconnected once it is back."""
    gateway = await start_gateway(inject=flaky_registry.inject)
    charger = stack.seed_charger()
    async with charger_session(gateway, charger, V201):
        await wait_registered(stack, charger, gateway.instance_id)
        flaky_registry.disconnections_down = True
        FAULTS.append("DynamoDB unreachable for a disconnection")
    await wait_until(lambda: not gateway.storage_ok, 5, what="the failed write to be noticed")
    assert stack.registry.get_charger(charger.id).is_connected  # what the outage left behind
    flaky_registry.disconnections_down = False
    await wait_until(lambda: not stack.registry.get_charger(charger.id).is_connected, 5, what="the disconnection")
    await wait_until(lambda: gateway.storage_ok, 5, what="recovery")


# -- SQS -------------------------------------------------------------------------------------------


async def test_sqs_restart_mid_run(stack, start_gateway):
    """During an SQS outage a command is refused at once and recorded not sent; afterwards the gateway
    creates its queue again by itself and commands reach the charger."""
    gateway = await start_gateway()
    charger = stack.seed_charger()
    behaviour = Behaviour()
    async with charger_session(gateway, charger, V201, behaviour):
        await wait_registered(stack, charger, gateway.instance_id)
        stack.aws.stop_sqs()
        FAULTS.append("SQS stopped and restarted")
        command = stack.command(charger, V201)
        started = time.monotonic()
        with pytest.raises(DependencyUnavailable):
            await stack.execute(command, stack.queue_url_of(charger))
        assert time.monotonic() - started < 5
        assert stack.ledger.get(command.command_id).outcome.kind is OutcomeKind.NOT_SENT

        await asyncio.to_thread(stack.aws.start_sqs)

        def queue_back() -> bool:
            try:
                stack.sqs.get_queue_url(QueueName=gateway.settings.queue_name)
            except Exception:
                return False
            return True

        await wait_until(queue_back, 15, what="the instance queue to be created again")
        await wait_registered(stack, charger, gateway.instance_id)
        outcome = await stack.execute(stack.command(charger, V201), stack.queue_url_of(charger))
    assert outcome.kind is OutcomeKind.RESULT
    assert len(behaviour.received) == 1  # the refused command never reached the charger


# -- a gateway instance killed ----------------------------------------------------------------


async def test_gateway_killed_mid_command(stack, start_gateway, tmp_path):
    """SIGKILL while a ReserveNow waits on the charger: the caller gets timeout, the reservation is
    Failed, nothing is sent twice; the charger reconnects elsewhere and later commands succeed."""
    env = {
        **os.environ,
        **stack.aws.env(),
        "GATEWAY_QUEUE_WAIT_S": "1",
        "LOG_LEVEL": "INFO",
    }
    process = GatewayProcess(f"k{os.urandom(4).hex()}", free_port(), tmp_path / "gateway.log")
    process.start(env)
    try:
        await asyncio.to_thread(process.wait_healthy)
        charger = stack.seed_charger()
        reservation = stack.seed_pending_reservation(charger)
        behaviour = Behaviour(mode="silent")
        async with charger_session(_At(process.port), charger, V16, behaviour):  # type: ignore[arg-type]
            await wait_registered(stack, charger, process.instance_id)
            command = stack.command(charger, V16, timeout_s=2.0, reservation=reservation)
            pending = asyncio.create_task(stack.execute(command, stack.queue_url_of(charger)))
            await wait_until(lambda: behaviour.received, 5, what="the ReserveNow to reach the charger")
            process.kill()
            FAULTS.append("gateway process killed (SIGKILL) mid-command")
            started = time.monotonic()
            outcome = await asyncio.wait_for(pending, 10)
        assert (outcome.kind, outcome.completed_by) == (OutcomeKind.TIMEOUT, "api")
        assert time.monotonic() - started < 5
        assert stack.reservation_state(reservation) is ReservationState.FAILED
        assert len(behaviour.received) == 1
    finally:
        process.kill()

    # The charger reconnects through the balancer to another instance.
    survivor = await start_gateway()
    behaviour = Behaviour()
    async with charger_session(survivor, charger, V16, behaviour):
        await wait_registered(stack, charger, survivor.instance_id)
        outcome = await stack.execute(stack.command(charger, V16), stack.queue_url_of(charger))
    assert outcome.kind is OutcomeKind.RESULT
    assert [action for action, _ in behaviour.received] == ["CancelReservation"]  # the old command not resent
    assert stack.ledger.get(command.command_id).outcome.kind is OutcomeKind.TIMEOUT


# -- the API's waiter and a late charger ---------------------------------------------------------


async def test_waiter_giving_up_mid_wait_keeps_its_outcome(stack, start_gateway):
    """The API's waiter records timeout mid-wait; the charger's later Accepted cannot overwrite it, and
    the charger is told to drop the reservation so that it agrees with the Failed record."""
    gateway = await start_gateway()
    charger = stack.seed_charger()
    reservation = stack.seed_pending_reservation(charger)
    behaviour = Behaviour(mode="late", delay_s=0.7)
    # A waiter whose clock runs past the deadline at once: a Lambda out of time mid-wait.
    impatient = CommandChannel(stack.ledger, stack.sqs, stack.settings, clock=lambda: utcnow() + timedelta(hours=1))
    async with charger_session(gateway, charger, V201, behaviour):
        await wait_registered(stack, charger, gateway.instance_id)
        command = stack.command(charger, V201, timeout_s=3.0, reservation=reservation)
        await asyncio.to_thread(stack.channel.submit, command)
        await asyncio.to_thread(stack.channel.send, command, gateway.queue_url)
        await wait_until(lambda: behaviour.received, 5, what="the ReserveNow to reach the charger")
        outcome = await asyncio.to_thread(impatient.wait, command)
        FAULTS.append("API waiter timed out mid-wait")
        assert (outcome.kind, outcome.completed_by) == (OutcomeKind.TIMEOUT, "api")
        await wait_until(lambda: len(behaviour.received) == 2, 5, what="the compensating CancelReservation")
    assert stack.ledger.get(command.command_id).outcome == outcome
    assert stack.reservation_state(reservation) is ReservationState.FAILED
    assert behaviour.received == [
        ("ReserveNow", behaviour.received[0][1]),
        ("CancelReservation", {"reservation_id": reservation.reservation_id}),
    ]


@pytest.mark.parametrize("version", [V16, V201])
async def test_charger_answering_after_the_deadline(stack, start_gateway, version):
    """A ReserveNow answered Accepted after its deadline stays a timeout (recorded once), the
    reservation stays Failed, and the charger is told to cancel it."""
    gateway = await start_gateway()
    charger = stack.seed_charger()
    reservation = stack.seed_pending_reservation(charger)
    behaviour = Behaviour(mode="late", delay_s=1.5)
    async with charger_session(gateway, charger, version, behaviour):
        await wait_registered(stack, charger, gateway.instance_id)
        command = stack.command(charger, version, timeout_s=0.8, reservation=reservation)
        outcome = await stack.execute(command, gateway.queue_url)
        FAULTS.append(f"charger answered after the deadline ({version.value})")
        assert (outcome.kind, outcome.completed_by) == (OutcomeKind.TIMEOUT, gateway.instance_id)
        await wait_until(lambda: len(behaviour.received) == 2, 5, what="the compensating CancelReservation")
    assert stack.ledger.get(command.command_id).outcome == outcome
    assert stack.reservation_state(reservation) is ReservationState.FAILED
    assert behaviour.received[1] == ("CancelReservation", {"reservation_id": reservation.reservation_id})


async def test_charger_rejecting_after_the_deadline_needs_no_undo(stack, start_gateway):
    """A late answer that is not Accepted already agrees with the Failed record: nothing more is sent."""
    gateway = await start_gateway()
    charger = stack.seed_charger()
    reservation = stack.seed_pending_reservation(charger)
    behaviour = Behaviour(mode="late", delay_s=1.2, status="Occupied")
    async with charger_session(gateway, charger, V16, behaviour):
        await wait_registered(stack, charger, gateway.instance_id)
        command = stack.command(charger, V16, timeout_s=0.8, reservation=reservation)
        outcome = await stack.execute(command, gateway.queue_url)
        await asyncio.sleep(1.0)
    assert outcome.kind is OutcomeKind.TIMEOUT
    assert [action for action, _ in behaviour.received] == ["ReserveNow"]
    assert stack.reservation_state(reservation) is ReservationState.FAILED


# -- duplicate deliveries ----------------------------------------------------------------------------


async def test_duplicate_deliveries_during_and_after_a_reservation(stack, start_gateway):
    """A ReserveNow delivered three times (two during the call, one after it completed) reaches the
    charger once, has one outcome, and its reservation is Accepted once; the stray copy is received and
    left hidden to expire, like the others."""
    gateway = await start_gateway()
    charger = stack.seed_charger()
    reservation = stack.seed_pending_reservation(charger)
    behaviour = Behaviour(mode="late", delay_s=0.5)
    async with charger_session(gateway, charger, V201, behaviour):
        await wait_registered(stack, charger, gateway.instance_id)
        command = stack.command(charger, V201, reservation=reservation)
        body = CommandEnvelope(command=command).to_json()
        await asyncio.to_thread(stack.channel.submit, command)
        for _ in range(2):
            await asyncio.to_thread(stack.sqs.send_message, QueueUrl=gateway.queue_url, MessageBody=body)
        FAULTS.append("duplicate SQS deliveries")
        outcome = await asyncio.to_thread(stack.channel.wait, command)
        await asyncio.to_thread(stack.sqs.send_message, QueueUrl=gateway.queue_url, MessageBody=body)

        def all_received() -> bool:
            attributes = stack.sqs.get_queue_attributes(
                QueueUrl=gateway.queue_url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            return (attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"]) == (
                "0",
                "3",
            )

        await wait_until(all_received, 10, what="every copy received and hidden")
        await asyncio.sleep(0.3)  # room for the stray copy to be (not) sent
    assert outcome.kind is OutcomeKind.RESULT
    assert [action for action, _ in behaviour.received] == ["ReserveNow"]
    assert stack.ledger.get(command.command_id).outcome == outcome
    assert stack.reservation_state(reservation) is ReservationState.ACCEPTED
