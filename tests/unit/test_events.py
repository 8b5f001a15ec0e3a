"""Reservation events: which stored change is which event, its body and id, the publisher, signatures.

The publisher runs on in-memory EventBridge and SQS (moto) with a rule to a queue, as a
partner's rule would route them; stream records are built from the table's own items.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from api_harness import LambdaContext
from fixtures.functions import load_function
from fixtures.moto_env import mocked_aws

from evreserve import signing
from evreserve.events import EVENT_SOURCE, EventType, event_id, event_type
from evreserve.models import Reservation, ReservationState
from evreserve.storage.codec import to_item
from evreserve.storage.items import reservation_item
from evreserve.storage.webhooks import WebhookStore
from evreserve.webhooks import Delivery, Webhook

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def reservation(state: ReservationState, *, at: datetime = T0, created: datetime = T0) -> Reservation:
    return Reservation(
        account_id=7,
        reservation_id=1001,
        charger_id=12,
        port_id=34,
        port_number=1,
        id_tag="RFID001",
        expiry_date=T0 + timedelta(hours=1),
        state=state,
        created_at=created,
        updated_at=at,
        command_id="c1",
    )


def record(before: Reservation | None, after: Reservation | None, sequence: int) -> dict[str, Any]:
    """A stream record as Lambda hands it over (NEW_AND_OLD_IMAGES)."""
    change: dict[str, Any] = {"SequenceNumber": str(sequence)}
    if before is not None:
        change["OldImage"] = to_item(reservation_item(before))
    if after is not None:
        change["NewImage"] = to_item(reservation_item(after))
    kind = "INSERT" if before is None else "REMOVE" if after is None else "MODIFY"
    return {"eventName": kind, "dynamodb": change, "eventSource": "aws:dynamodb"}


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (ReservationState.PENDING, ReservationState.ACCEPTED, EventType.ACCEPTED),
        (ReservationState.PENDING, ReservationState.OCCUPIED, EventType.REFUSED),
        (ReservationState.PENDING, ReservationState.FAULTED, EventType.REFUSED),
        (ReservationState.PENDING, ReservationState.REJECTED, EventType.REFUSED),
        (ReservationState.PENDING, ReservationState.UNAVAILABLE, EventType.REFUSED),
        (ReservationState.PENDING, ReservationState.FAILED, EventType.FAILED),
        (ReservationState.ACCEPTED, ReservationState.CANCELLED, EventType.CANCELLED),
        (ReservationState.ACCEPTED, ReservationState.USED, EventType.USED),
        (ReservationState.ACCEPTED, ReservationState.EXPIRED, EventType.EXPIRED),
        (ReservationState.ACCEPTED, ReservationState.REMOVED, EventType.REMOVED),
        (None, ReservationState.PENDING, None),
        (ReservationState.FAILED, ReservationState.PENDING, None),
        (ReservationState.ACCEPTED, ReservationState.ACCEPTED, None),
    ],
)
def test_each_stored_change_is_one_event_or_none(before, after, expected):
    old = reservation(before) if before is not None else None
    assert event_type(old, reservation(after, at=T0 + timedelta(seconds=1))) is expected


def test_a_deleted_record_is_no_event():
    assert event_type(reservation(ReservationState.EXPIRED), None) is None


def test_a_replaced_record_reaching_the_same_state_is_an_event_again():
    """Accepted, failed, retried under the same reservationId and accepted again: two accepted events."""
    first = reservation(ReservationState.ACCEPTED)
    again = reservation(ReservationState.ACCEPTED, created=T0 + timedelta(minutes=5), at=T0 + timedelta(minutes=5))
    assert event_type(first, again) is EventType.ACCEPTED
    assert event_id(first) != event_id(again)


def test_the_id_depends_on_the_change_not_on_its_delivery():
    after = reservation(ReservationState.ACCEPTED, at=T0 + timedelta(seconds=1))
    assert event_id(after) == event_id(after.model_copy())
    assert event_id(after) != event_id(after.model_copy(update={"state": ReservationState.CANCELLED}))
    assert event_id(after).startswith("evt_")


# -- the publisher ----------------------------------------------------------------------


@pytest.fixture
def bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    env = {
        "EVENT_BUS_NAME": "evreserve-test",
        "WEBHOOKS_TABLE": "webhooks",
        "WEBHOOK_QUEUE_URL": "set-below",
        # Read by the functions' shared settings; nothing here reaches a table.
        **{name: "unused" for name in ("REGISTRY_TABLE", "RESERVATIONS_TABLE", "COMMANDS_TABLE")},
        **{name: "unused" for name in ("OCPP_MESSAGES_TABLE", "RATE_LIMIT_TABLE")},
    }
    with mocked_aws(monkeypatch, env):
        events = boto3.client("events", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        events.create_event_bus(Name="evreserve-test")
        queue = sqs.create_queue(QueueName="partner-rule")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(
            Name="reservations", EventBusName="evreserve-test", EventPattern=json.dumps({"source": [EVENT_SOURCE]})
        )
        events.put_targets(Rule="reservations", EventBusName="evreserve-test", Targets=[{"Id": "q", "Arn": arn}])
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(
            TableName="webhooks",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        )
        deliveries = sqs.create_queue(QueueName="deliveries")["QueueUrl"]
        monkeypatch.setenv("WEBHOOK_QUEUE_URL", deliveries)
        publisher = load_function("publisher")
        settings = publisher.PublisherSettings()
        store = WebhookStore(dynamodb, "webhooks")
        publisher.use_clients(events, sqs, store, settings)
        yield {
            "publisher": publisher,
            "sqs": sqs,
            "queue": queue,
            "events": events,
            "store": store,
            "settings": settings,
            "deliveries": deliveries,
        }


def received(bus: dict[str, Any]) -> list[dict[str, Any]]:
    messages = bus["sqs"].receive_message(QueueUrl=bus["queue"], MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def test_the_publisher_sends_each_change_to_the_bus_with_the_reservation_as_get_shows_it(bus):
    pending = reservation(ReservationState.PENDING)
    accepted = reservation(ReservationState.ACCEPTED, at=T0 + timedelta(seconds=1))
    cancelled = reservation(ReservationState.CANCELLED, at=T0 + timedelta(seconds=9))
    records = [record(None, pending, 1), record(pending, accepted, 2), record(accepted, cancelled, 3)]
    assert bus["publisher"].handler({"Records": records}, LambdaContext()) == {"batchItemFailures": []}
    got = received(bus)
    assert [(e["source"], e["detail-type"]) for e in got] == [
        (EVENT_SOURCE, "reservation.accepted"),
        (EVENT_SOURCE, "reservation.cancelled"),
    ]
    detail = got[0]["detail"]
    assert detail["id"] == event_id(accepted) and detail["accountId"] == 7
    assert detail["type"] == "reservation.accepted" and detail["createdAt"] == detail["data"]["updatedAt"]
    assert detail["data"]["status"] == "Accepted" and detail["data"]["active"] is True
    assert detail["data"]["reservationId"] == 1001 and detail["data"]["portId"] == 34
    assert got[1]["detail"]["data"]["status"] == "Cancelled"


def test_a_redelivered_batch_publishes_the_same_ids(bus):
    pending = reservation(ReservationState.PENDING)
    accepted = reservation(ReservationState.ACCEPTED, at=T0 + timedelta(seconds=1))
    batch = {"Records": [record(pending, accepted, 2)]}
    bus["publisher"].handler(batch, LambdaContext())
    bus["publisher"].handler(batch, LambdaContext())
    ids = [e["detail"]["id"] for e in received(bus)]
    assert len(ids) == 2 and len(set(ids)) == 1


def test_a_failed_put_events_retries_from_the_first_unpublished_record(bus):
    """EventBridge refuses the second entry of a call: the stream is to deliver again from its record."""

    class Refusing:
        def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            return {"FailedEntryCount": 1, "Entries": [{"EventId": "1"}, {"ErrorCode": "InternalFailure"}]}

    publisher = bus["publisher"]
    publisher.use_clients(Refusing(), bus["sqs"], bus["store"], bus["settings"])
    first = reservation(ReservationState.ACCEPTED, at=T0 + timedelta(seconds=1))
    other = first.model_copy(update={"reservation_id": 1002})
    pending = reservation(ReservationState.PENDING)
    records = [record(pending, first, 2), record(pending.model_copy(update={"reservation_id": 1002}), other, 3)]
    answer = publisher.handler({"Records": records}, LambdaContext())
    assert answer == {"batchItemFailures": [{"itemIdentifier": "3"}]}


def test_two_changes_of_one_reservation_never_share_a_call(bus):
    """A refused change is never overtaken by a later change of the same reservation."""
    calls: list[list[str]] = []

    class RefusingFirst:
        def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            calls.append([e["DetailType"] for e in Entries])
            return {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure"} for _ in Entries]}

    publisher = bus["publisher"]
    publisher.use_clients(RefusingFirst(), bus["sqs"], bus["store"], bus["settings"])
    pending = reservation(ReservationState.PENDING)
    accepted = reservation(ReservationState.ACCEPTED, at=T0 + timedelta(seconds=1))
    cancelled = reservation(ReservationState.CANCELLED, at=T0 + timedelta(seconds=9))
    answer = publisher.handler(
        {"Records": [record(pending, accepted, 2), record(accepted, cancelled, 3)]}, LambdaContext()
    )
    assert answer == {"batchItemFailures": [{"itemIdentifier": "2"}]}
    assert calls == [["reservation.accepted"]]  # the cancel was not sent ahead of it


def test_a_record_that_is_no_reservation_change_is_passed_over(bus):
    """A record the publisher cannot read does not hold the stream: logged, skipped, the rest published."""
    pending = reservation(ReservationState.PENDING)
    accepted = reservation(ReservationState.ACCEPTED, at=T0 + timedelta(seconds=1))
    broken = {"eventName": "MODIFY", "dynamodb": {"SequenceNumber": "1", "NewImage": {"entity": {"S": "reservation"}}}}
    answer = bus["publisher"].handler({"Records": [broken, record(pending, accepted, 2)]}, LambdaContext())
    assert answer == {"batchItemFailures": []}
    assert [e["detail-type"] for e in received(bus)] == ["reservation.accepted"]


def webhook(webhook_id: str, account_id: int = 7, events: tuple[EventType, ...] = tuple(EventType)) -> Webhook:
    return Webhook(
        webhook_id=webhook_id,
        account_id=account_id,
        url="https://partner.example/hooks",
        events=events,
        secret="whsec_test",
        created_at=T0,
    )


def queued(bus: dict[str, Any]) -> list[Delivery]:
    got: list[Delivery] = []
    while True:
        messages = bus["sqs"].receive_message(QueueUrl=bus["deliveries"], MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return got
        for message in messages:
            got.append(Delivery.from_message(message["Body"]))
            bus["sqs"].delete_message(QueueUrl=bus["deliveries"], ReceiptHandle=message["ReceiptHandle"])


def test_each_event_is_queued_once_for_each_webhook_of_its_account_that_wants_its_type(bus):
    bus["store"].create(webhook("wh_all"))
    bus["store"].create(webhook("wh_cancels", events=(EventType.CANCELLED,)))
    bus["store"].create(webhook("wh_other_account", account_id=8))
    pending = reservation(ReservationState.PENDING)
    accepted = reservation(ReservationState.ACCEPTED, at=T0 + timedelta(seconds=1))
    cancelled = reservation(ReservationState.CANCELLED, at=T0 + timedelta(seconds=9))
    records = [record(pending, accepted, 2), record(accepted, cancelled, 3)]
    assert bus["publisher"].handler({"Records": records}, LambdaContext()) == {"batchItemFailures": []}
    deliveries = queued(bus)
    got = sorted((d.webhook_id, d.event_type) for d in deliveries)
    assert got == [
        ("wh_all", "reservation.accepted"),
        ("wh_all", "reservation.cancelled"),
        ("wh_cancels", "reservation.cancelled"),
    ]
    on_bus = {e["detail"]["id"]: e["detail"] for e in received(bus)}
    assert {json.dumps(json.loads(d.body), sort_keys=True) for d in deliveries} == {
        json.dumps(detail, sort_keys=True) for detail in on_bus.values()
    }


def test_the_bus_and_the_webhooks_get_the_same_body(bus):
    bus["store"].create(webhook("wh_all"))
    pending = reservation(ReservationState.PENDING)
    accepted = reservation(ReservationState.ACCEPTED, at=T0 + timedelta(seconds=1))
    bus["publisher"].handler({"Records": [record(pending, accepted, 2)]}, LambdaContext())
    (delivery,) = queued(bus)
    (event,) = received(bus)
    assert delivery.event_id == event["detail"]["id"] == event_id(accepted)
    assert json.loads(delivery.body) == event["detail"]
    assert delivery.attempt == 1 and delivery.first_at is None


def test_a_delivery_sqs_refuses_retries_from_its_change(bus):
    """SQS refuses the deliveries of the second change: the stream delivers again from that change."""
    bus["store"].create(webhook("wh_all"))

    class RefusingSecond:
        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            return {"Successful": [{"Id": Entries[0]["Id"]}], "Failed": [{"Id": e["Id"]} for e in Entries[1:]]}

    publisher = bus["publisher"]
    publisher.use_clients(bus["events"], RefusingSecond(), bus["store"], bus["settings"])
    first = reservation(ReservationState.ACCEPTED, at=T0 + timedelta(seconds=1))
    other = first.model_copy(update={"reservation_id": 1002})
    pending = reservation(ReservationState.PENDING)
    records = [record(pending, first, 2), record(pending.model_copy(update={"reservation_id": 1002}), other, 3)]
    assert publisher.handler({"Records": records}, LambdaContext()) == {"batchItemFailures": [{"itemIdentifier": "3"}]}


# -- signatures -------------------------------------------------------------------------


def test_a_signature_verifies_only_with_its_secret_body_and_time():
    body = b'{"id":"evt_1"}'
    header = signing.signature("whsec_a", 1_765_000_000, body)
    assert header.startswith("t=1765000000,v1=") and len(header.split("v1=")[1]) == 64
    assert signing.verify("whsec_a", header, body, now=1_765_000_100)
    assert not signing.verify("whsec_b", header, body, now=1_765_000_100)
    assert not signing.verify("whsec_a", header, body + b" ", now=1_765_000_100)
    assert not signing.verify("whsec_a", header, body, now=1_765_000_000 + 301)
    assert not signing.verify("whsec_a", "v1=abc", body, now=1_765_000_000)
    rotated = header + ",v1=" + "0" * 64
    assert signing.verify("whsec_a", rotated, body, now=1_765_000_000)
