"""The command channel and the core's stores against the real local DynamoDB and SQS servers."""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import timedelta

import pytest
from fixtures.channel import execute

from evreserve.aws import dynamodb_client, sqs_client
from evreserve.channel import CommandChannel, CommandEnvelope
from evreserve.errors import DependencyUnavailable, IdempotencyConflict, NotFound, StaleWrite
from evreserve.models import (
    BootInfo,
    Charger,
    Command,
    CommandAction,
    CommandOutcome,
    Connection,
    ConnectionState,
    OcppVersion,
    OutcomeKind,
    Port,
    Reservation,
    ReservationRef,
    ReservationState,
    utcnow,
)
from evreserve.settings import AwsSettings, ChannelSettings, CoreSettings
from evreserve.storage import items
from evreserve.storage.codec import to_item
from evreserve.storage.commands import CommandLedger
from evreserve.storage.registry import RegistryStore
from evreserve.storage.reservations import ReservationStore

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(local_aws) -> CoreSettings:
    return CoreSettings(command_timeout_s=2.0, command_grace_s=0.5)  # type: ignore[call-arg]


@pytest.fixture
def ledger(settings) -> CommandLedger:
    return CommandLedger(dynamodb_client(settings), settings.commands_table, settings.reservations_table)


@pytest.fixture
def queue_url(settings) -> str:
    sqs = sqs_client(settings)
    url = sqs.create_queue(QueueName=f"channel-test-{os.urandom(4).hex()}")["QueueUrl"]
    yield url
    sqs.delete_queue(QueueUrl=url)


def _command(settings: CoreSettings, request_hash: str = "h1", reservation: ReservationRef | None = None) -> Command:
    now = utcnow()
    return Command(
        command_id=os.urandom(8).hex(),
        account_id=1,
        charger_id=1,
        ocpp_id="CP-1",
        ocpp_version=OcppVersion.V16,
        action=CommandAction.CANCEL_RESERVATION,
        payload={"reservationId": 7},
        instance_id="i1",
        session_id="s1",
        created_at=now,
        deadline=now + timedelta(seconds=settings.command_timeout_s),
        request_hash=request_hash,
        reservation=reservation,
    )


class FakeGatewayLoop(threading.Thread):
    """Plays the gateway's part: receive an envelope, answer it through the ledger, count sends."""

    def __init__(self, settings: CoreSettings, queue_url: str, ledger: CommandLedger, answer: dict) -> None:
        super().__init__(daemon=True)
        self.sqs = sqs_client(settings)
        self.queue_url, self.ledger, self.answer = queue_url, ledger, answer
        self.received: list[Command] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            batch = self.sqs.receive_message(QueueUrl=self.queue_url, WaitTimeSeconds=1, MaxNumberOfMessages=10)
            for message in batch.get("Messages", []):
                command = CommandEnvelope.from_json(message["Body"]).command
                self.received.append(command)
                outcome = CommandOutcome(
                    kind=OutcomeKind.RESULT, payload=self.answer, completed_at=utcnow(), completed_by="i1"
                )
                self.ledger.complete(command, outcome)
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def gateway(settings, queue_url, ledger):
    loop = FakeGatewayLoop(settings, queue_url, ledger, {"status": "Accepted"})
    loop.start()
    yield loop
    loop.stop.set()
    loop.join(timeout=5)


def test_command_is_sent_picked_up_answered_and_read_back(settings, ledger, queue_url, gateway):
    """A command goes through SQS to the gateway side, and its answer comes back through DynamoDB."""
    channel = CommandChannel(ledger, sqs_client(settings), settings)
    command = _command(settings)
    outcome = execute(channel, command, queue_url)
    assert outcome.kind is OutcomeKind.RESULT and outcome.payload == {"status": "Accepted"}
    assert [c.command_id for c in gateway.received] == [command.command_id]
    stored = ledger.get(command.command_id)
    assert stored is not None and stored.outcome == outcome


def test_retry_of_the_same_request_is_not_sent_twice(settings, ledger, queue_url, gateway):
    """A second execute of the same command id returns the first outcome without a second message."""
    channel = CommandChannel(ledger, sqs_client(settings), settings)
    command = _command(settings)
    first = execute(channel, command, queue_url)
    second = execute(channel, command, queue_url)
    assert first == second
    time.sleep(0.3)
    assert len(gateway.received) == 1


def test_same_id_with_another_body_is_a_conflict(settings, ledger, queue_url, gateway):
    """The same idempotency key with a different request is refused, not answered with the old outcome."""
    channel = CommandChannel(ledger, sqs_client(settings), settings)
    command = _command(settings)
    execute(channel, command, queue_url)
    with pytest.raises(IdempotencyConflict):
        execute(channel, command.model_copy(update={"request_hash": "other"}), queue_url)


def test_unanswered_command_times_out_once_and_late_answer_loses(settings, ledger, queue_url):
    """With nobody answering, the waiter records a timeout; a gateway answering later cannot overwrite it."""
    channel = CommandChannel(ledger, sqs_client(settings), settings)
    command = _command(settings)
    started = time.monotonic()
    outcome = execute(channel, command, queue_url)
    elapsed = time.monotonic() - started
    assert outcome.kind is OutcomeKind.TIMEOUT and outcome.completed_by == "api"
    assert settings.command_timeout_s <= elapsed < settings.command_timeout_s + settings.command_grace_s + 1.5
    late = CommandOutcome(
        kind=OutcomeKind.RESULT, payload={"status": "Accepted"}, completed_at=utcnow(), completed_by="i1"
    )
    assert ledger.complete(command, late) == outcome


def test_outcome_moves_the_reservation_in_the_same_write(settings, ledger):
    """Completing a cancel Accepted marks its reservation Cancelled; a second completion changes nothing."""
    dynamodb = dynamodb_client(settings)
    reservations = ReservationStore(dynamodb, settings.reservations_table)
    now = utcnow()
    reservation_id = int.from_bytes(os.urandom(3), "big")
    reservation = Reservation(
        account_id=1,
        reservation_id=reservation_id,
        charger_id=1,
        port_id=1,
        port_number=1,
        id_tag="T",
        expiry_date=now + timedelta(hours=1),
        state=ReservationState.ACCEPTED,
        created_at=now,
        updated_at=now,
        command_id="earlier",
    )
    dynamodb.put_item(TableName=settings.reservations_table, Item=to_item(items.reservation_item(reservation)))
    command = _command(settings, reservation=ReservationRef(account_id=1, reservation_id=reservation_id))
    channel = CommandChannel(ledger, sqs_client(settings), settings)
    channel.submit(command)
    accepted = CommandOutcome(
        kind=OutcomeKind.RESULT, payload={"status": "Accepted"}, completed_at=now, completed_by="i1"
    )
    assert ledger.complete(command, accepted) == accepted
    stored = reservations.get(1, reservation_id)
    assert stored is not None and stored.state is ReservationState.CANCELLED and stored.ended_at is not None


def test_command_record_carries_a_ttl(settings, ledger):
    """Command records expire by TTL after the idempotency window."""
    channel = CommandChannel(ledger, sqs_client(settings), settings)
    command = _command(settings)
    channel.submit(command)
    item = dynamodb_client(settings).get_item(
        TableName=settings.commands_table, Key={"pk": {"S": f"COMMAND#{command.command_id}"}}
    )["Item"]
    expected = command.deadline.timestamp() + settings.idempotency_window_s
    assert abs(int(item["ttl"]["N"]) - expected) <= 1


def _new_charger(registry: RegistryStore) -> int:
    """A charger with one port, registered now; its id."""
    charger_id = registry.next_id("charger")
    now = utcnow()
    registry.create_charger(
        Charger(
            id=charger_id,
            account_id=1,
            ocpp_id=f"CP-{os.urandom(4).hex()}",
            ports=(Port(id=registry.next_id("port"), port_number=1),),
            created_at=now,
            updated_at=now,
        )
    )
    return charger_id


def test_stale_connection_cannot_overwrite_newer_one(settings):
    """A connection registered earlier than the stored one is refused; the older session cannot mark it gone."""
    registry = RegistryStore(dynamodb_client(settings), settings.registry_table)
    charger_id = _new_charger(registry)
    now = utcnow()

    def connection(session: str, at) -> Connection:
        return Connection(
            state=ConnectionState.CONNECTED, timestamp=at, session_id=session, instance_id="i", queue_url="q"
        )

    registry.register_connection(charger_id, connection("new", now))
    with pytest.raises(StaleWrite):
        registry.register_connection(charger_id, connection("old", now - timedelta(seconds=1)))
    assert not registry.register_disconnection(charger_id, "old", utcnow())
    charger = registry.get_charger(charger_id)
    assert charger is not None and charger.is_connected and charger.connection.session_id == "new"
    assert registry.register_disconnection(charger_id, "new", utcnow())
    charger = registry.get_charger(charger_id)
    assert charger is not None and not charger.is_connected


def test_an_older_boot_never_overwrites_a_newer_one(settings):
    """A boot written again after a transaction conflict may arrive after a newer boot: it is not stored
    over it; on a charger that is gone it is NotFound."""
    registry = RegistryStore(dynamodb_client(settings), settings.registry_table)
    charger_id = _new_charger(registry)
    now = utcnow()
    registry.record_boot(charger_id, BootInfo(firmware_version="2.0", timestamp=now))
    registry.record_boot(charger_id, BootInfo(firmware_version="1.0", timestamp=now - timedelta(seconds=1)))
    stored = registry.get_charger(charger_id)
    assert stored is not None and stored.boot is not None and stored.boot.firmware_version == "2.0"
    registry.record_boot(charger_id, BootInfo(firmware_version="3.0", timestamp=now + timedelta(seconds=1)))
    stored = registry.get_charger(charger_id)
    assert stored is not None and stored.boot is not None and stored.boot.firmware_version == "3.0"
    with pytest.raises(NotFound):
        registry.record_boot(registry.next_id("charger"), BootInfo(timestamp=now))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_dynamodb_is_a_clear_error_not_a_hang(settings, monkeypatch):
    """With nothing listening, a store call fails fast with DependencyUnavailable."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{_closed_port()}")
    fast = AwsSettings(aws_connect_timeout_s=0.5, aws_read_timeout_s=0.5, aws_max_attempts=2)
    registry = RegistryStore(dynamodb_client(fast), settings.registry_table)
    started = time.monotonic()
    with pytest.raises(DependencyUnavailable):
        registry.get_charger(1)
    assert time.monotonic() - started < 5


def test_unreachable_sqs_marks_the_command_not_sent(settings, ledger, monkeypatch):
    """If the queue cannot be reached the caller gets DependencyUnavailable and a retry may queue it anew."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", f"http://127.0.0.1:{_closed_port()}")
    fast = AwsSettings(aws_connect_timeout_s=0.5, aws_read_timeout_s=0.5, aws_max_attempts=1)
    channel = CommandChannel(ledger, sqs_client(fast), ChannelSettings(command_timeout_s=2))
    command = _command(settings)
    with pytest.raises(DependencyUnavailable):
        execute(channel, command, "http://127.0.0.1:1/queue/none")
    stored = ledger.get(command.command_id)
    assert stored is not None and stored.outcome is not None and stored.outcome.kind is OutcomeKind.NOT_SENT
    assert channel.submit(command).created


class HiccupLedger(CommandLedger):
    """The waiting function's ledger: its first reads fail as in a short DynamoDB outage."""

    def __init__(self, *args, failures: int) -> None:
        super().__init__(*args)
        self.failures = failures

    def get(self, command_id: str):
        if self.failures:
            self.failures -= 1
            raise DependencyUnavailable("DynamoDB is unreachable")
        return super().get(command_id)


def test_a_failed_read_while_waiting_is_not_the_answer(settings, ledger, queue_url, gateway):
    """Defect 2: the waiter's read fails for a moment; it keeps polling and returns the charger's answer
    instead of a 503 for a command that was answered."""
    flaky = HiccupLedger(dynamodb_client(settings), settings.commands_table, settings.reservations_table, failures=3)
    channel = CommandChannel(flaky, sqs_client(settings), settings)
    command = _command(settings)
    outcome = execute(channel, command, queue_url)
    assert outcome.kind is OutcomeKind.RESULT and outcome.payload == {"status": "Accepted"}
    assert flaky.failures == 0
