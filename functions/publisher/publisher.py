"""The outbox's publisher: the reservations table's stream in, one event per stored state change out.

Lambda's DynamoDB event source hands this function the stream's records in order, retries
a batch that fails (bisecting it) and, past its retries, sends the batch's description to
the failure queue. So an event is published only once its change is stored, and a crash
anywhere loses nothing: the stream keeps the change for 24 hours. Delivery is at least once;
the event id is derived from the change (``evreserve.events.event_id``), the same on every
retry, and receivers dedupe on it.

Each event goes to the bus and, as one message per matching webhook, to the webhook
delivery queue (the deliverer POSTs it, with its own retries). A record counts as done
only when both took it; otherwise the stream delivers it again, and both get it again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

from evreserve import aws
from evreserve.events import EVENT_SOURCE, EventType, event_type
from evreserve.storage.stream import reservation_images
from evreserve.storage.webhooks import WebhookStore
from evreserve.webhooks import Delivery, Webhook
from evreserve_lambda import snapstart
from evreserve_lambda.events import event_body
from evreserve_lambda.settings import PublisherSettings

logger = Logger()

#: PutEvents takes at most 10 entries a request; so does SendMessageBatch.
PUT_EVENTS_MAX = 10
SEND_BATCH_MAX = 10


@dataclass(frozen=True, slots=True)
class Change:
    """One stored change that is an event, in stream order."""

    sequence: str
    account_id: int
    #: ``{accountId}/{reservationId}``: no two changes of one reservation share a PutEvents call.
    reservation_key: str
    kind: EventType
    event_id: str
    #: The event body, serialized once: the bus and every webhook get these same bytes.
    body: str

    def entry(self, bus: str) -> dict[str, Any]:
        return {"Source": EVENT_SOURCE, "DetailType": self.kind.value, "Detail": self.body, "EventBusName": bus}


@dataclass
class _Clients:
    events: Any
    sqs: Any
    webhooks: WebhookStore
    settings: PublisherSettings


_clients: _Clients | None = None


def _get_clients() -> _Clients:
    global _clients
    if _clients is None:
        settings = PublisherSettings.from_environment()
        store = WebhookStore(
            aws.dynamodb_client(settings), settings.webhooks_table, settings.webhook_delivery_retention_days
        )
        _clients = _Clients(aws.events_client(settings), aws.sqs_client(settings), store, settings)
    return _clients


def use_clients(events: Any, sqs: Any, webhooks: WebhookStore, settings: PublisherSettings) -> None:
    """Replace the clients (tests)."""
    global _clients
    _clients = _Clients(events, sqs, webhooks, settings)


def changes_of(records: list[dict[str, Any]]) -> list[Change]:
    """The records that are events, in stream order."""
    changes = []
    for record in records:
        sequence = str(record["dynamodb"]["SequenceNumber"])
        try:
            before, after = reservation_images(record)
            kind = event_type(before, after)
            if kind is None or after is None:
                continue
            body = event_body(kind, after)
        except Exception:
            # A record that cannot be read would hold every later one for the stream's 24 h:
            # it is logged whole (the table still has the reservation) and passed over.
            logger.exception("a stream record is no reservation change; skipped", extra={"record": record})
            continue
        changes.append(
            Change(
                sequence=sequence,
                account_id=after.account_id,
                reservation_key=f"{after.account_id}/{after.reservation_id}",
                kind=kind,
                event_id=str(body["id"]),
                body=json.dumps(body, separators=(",", ":")),
            )
        )
    return changes


def chunks(changes: list[Change]) -> list[list[Change]]:
    """PutEvents calls: at most 10 entries, and never two of one reservation in one call.

    EventBridge may refuse some entries of a call and publish the rest; the retry starts
    at the first refused one. Were a later change of the same reservation in that call, it
    would go out before the earlier one.
    """
    calls: list[list[Change]] = []
    current: list[Change] = []
    keys: set[str] = set()
    for change in changes:
        if len(current) == PUT_EVENTS_MAX or change.reservation_key in keys:
            calls.append(current)
            current, keys = [], set()
        current.append(change)
        keys.add(change.reservation_key)
    if current:
        calls.append(current)
    return calls


def deliveries(changes: list[Change], webhooks_of: dict[int, list[Webhook]]) -> list[tuple[int, Delivery]]:
    """(index of the change, delivery) for each webhook of the change's account that wants its type."""
    return [
        (index, Delivery(webhook.webhook_id, change.account_id, change.event_id, change.kind.value, change.body))
        for index, change in enumerate(changes)
        for webhook in webhooks_of.get(change.account_id, [])
        if webhook.wants(change.kind)
    ]


def _enqueue(clients: _Clients, queued: list[tuple[int, Delivery]]) -> int | None:
    """Send the deliveries; the index of the first change one of whose deliveries was not taken, if any."""
    first_failed: int | None = None
    for start in range(0, len(queued), SEND_BATCH_MAX):
        batch = queued[start : start + SEND_BATCH_MAX]
        answer = clients.sqs.send_message_batch(
            QueueUrl=clients.settings.webhook_queue_url,
            Entries=[{"Id": str(n), "MessageBody": delivery.to_message()} for n, (_, delivery) in enumerate(batch)],
        )
        for failure in answer.get("Failed", []):
            index = batch[int(failure["Id"])][0]
            first_failed = index if first_failed is None else min(first_failed, index)
    return first_failed


def _failure(sequence: str) -> dict[str, Any]:
    return {"batchItemFailures": [{"itemIdentifier": sequence}]}


# Under SnapStart the snapshot holds the clients (evreserve_lambda/snapstart.py).
snapstart.install(_get_clients)


@logger.inject_lambda_context(clear_state=True, log_event=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    clients = _get_clients()
    changes = changes_of(event.get("Records") or [])
    # Read once per batch, strongly consistent: a webhook created a moment ago gets the next event.
    webhooks_of: dict[int, list[Webhook]] = {}
    for chunk in chunks(changes):
        try:
            for account_id in {change.account_id for change in chunk} - set(webhooks_of):
                webhooks_of[account_id] = clients.webhooks.of_account(account_id)
            answer = clients.events.put_events(
                Entries=[change.entry(clients.settings.event_bus_name) for change in chunk]
            )
        except Exception:
            logger.exception("publishing failed; the stream delivers the batch again from here")
            return _failure(chunk[0].sequence)
        # The stream is in order: retrying from the first refused entry re-sends the ones
        # after it too (same ids), and never skips one.
        results = answer.get("Entries", [])
        refused = [n for n, result in enumerate(results) if "ErrorCode" in result]
        published = chunk[: refused[0]] if refused else chunk
        try:
            failed = _enqueue(clients, deliveries(published, webhooks_of))
        except Exception:
            logger.exception("queueing webhook deliveries failed; the stream delivers the batch again from here")
            return _failure(chunk[0].sequence)
        if failed is not None:
            logger.warning("SQS refused webhook deliveries; retried", extra={"change": published[failed].event_id})
            return _failure(published[failed].sequence)
        if refused:
            logger.warning("EventBridge refused events; retried", extra={"refused": len(refused)})
            return _failure(chunk[refused[0]].sequence)
    if changes:
        logger.info("published reservation events", extra={"events": len(changes)})
    return {"batchItemFailures": []}
