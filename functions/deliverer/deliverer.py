"""The webhook deliverer: the delivery queue in, one signed POST per message out, retried until it lands.

Each message is one event for one webhook (``evreserve.webhooks.Delivery``). A 2xx within
10 s is delivered. Anything else is logged as ``retrying`` and the message is sent again
with the next delay of the schedule (SQS delays at most 15 minutes; a longer wait is
several hops, each checked against ``notBefore``) until the retry window (24 h) has passed
since the first attempt; the last failure is logged as ``failed``. Every attempt sends
the same body with the same event id, signed afresh (the signature's timestamp is the
attempt's). A message this function cannot handle at all (unreadable, SQS or DynamoDB
down) is left on the queue: SQS retries it and, past ``maxReceiveCount``, moves it to the
dead-letter queue, which has an alarm.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger

from evreserve import aws, signing
from evreserve.storage.webhooks import WebhookStore
from evreserve.webhooks import Delivery, DeliveryRecord, DeliveryStatus, RetrySchedule, queue_delay
from evreserve_lambda import snapstart
from evreserve_lambda.settings import DelivererSettings
from evreserve_lambda.webhook_post import Answer, post

logger = Logger()

EVENT_ID_HEADER = "Evreserve-Event-Id"


@dataclass
class _Clients:
    sqs: Any
    webhooks: WebhookStore
    settings: DelivererSettings
    schedule: RetrySchedule


_clients: _Clients | None = None


def _schedule(settings: DelivererSettings) -> RetrySchedule:
    return RetrySchedule(settings.webhook_retry_base_s, settings.webhook_retry_max_s, settings.webhook_retry_window_s)


def _get_clients() -> _Clients:
    global _clients
    if _clients is None:
        settings = DelivererSettings.from_environment()
        store = WebhookStore(
            aws.dynamodb_client(settings), settings.webhooks_table, settings.webhook_delivery_retention_days
        )
        _clients = _Clients(aws.sqs_client(settings), store, settings, _schedule(settings))
    return _clients


def use_clients(sqs: Any, webhooks: WebhookStore, settings: DelivererSettings) -> None:
    """Replace the clients (tests)."""
    global _clients
    _clients = _Clients(sqs, webhooks, settings, _schedule(settings))


def _send(clients: _Clients, delivery: Delivery, now: float) -> None:
    clients.sqs.send_message(
        QueueUrl=clients.settings.webhook_queue_url,
        MessageBody=delivery.to_message(),
        DelaySeconds=queue_delay(delivery.not_before, now),
    )


def _record(clients: _Clients, delivery: Delivery, status: DeliveryStatus, answer: Answer, now: float) -> None:
    record = DeliveryRecord(
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        attempt=delivery.attempt,
        status=status,
        response_status=answer.status,
        error=answer.error,
        at=datetime.fromtimestamp(now, UTC),
    )
    try:
        clients.webhooks.record(delivery.webhook_id, record)
    except Exception:
        # The attempt happened and its consequence (the retry) is queued: a missing log line
        # is not worth sending the event again for.
        logger.exception("the delivery log could not be written", extra={"eventId": delivery.event_id})


def deliver(clients: _Clients, text: str) -> None:
    """Handle one message; raises when it must stay on the queue."""
    delivery = Delivery.from_message(text)
    now = time.time()
    if delivery.not_before > now + 1:
        _send(clients, delivery, now)  # another hop of a wait longer than SQS's 15 minutes
        return
    webhook = clients.webhooks.get(delivery.account_id, delivery.webhook_id)
    if webhook is None:
        logger.info("the webhook was deleted; its delivery is dropped", extra={"webhookId": delivery.webhook_id})
        return
    body = delivery.body.encode()
    sent_at = int(time.time())
    headers = {
        "Content-Type": "application/json",
        EVENT_ID_HEADER: delivery.event_id,
        signing.HEADER: signing.signature(webhook.secret, sent_at, body),
    }
    answer = post(webhook.url, body, headers, allow_loopback=clients.settings.webhook_allow_local_http)
    now = time.time()
    if answer.delivered:
        _record(clients, delivery, DeliveryStatus.DELIVERED, answer, now)
        return
    first_at = delivery.first_at if delivery.first_at is not None else now
    if clients.schedule.gives_up(first_at, now):
        logger.warning(
            "a webhook delivery failed for good",
            extra={"webhookId": webhook.webhook_id, "eventId": delivery.event_id, "attempts": delivery.attempt},
        )
        _record(clients, delivery, DeliveryStatus.FAILED, answer, now)
        return
    # Queued before it is logged: were the function to die between the two, the retry
    # matters, the log line does not.
    _send(clients, delivery.retried(first_at, now, clients.schedule), now)
    _record(clients, delivery, DeliveryStatus.RETRYING, answer, now)


def _handle(clients: _Clients, record: dict[str, Any]) -> str | None:
    """The message id when the message must stay on the queue."""
    try:
        deliver(clients, record["body"])
    except Exception:
        logger.exception(
            "a delivery message could not be handled; SQS retries it", extra={"messageId": record.get("messageId")}
        )
        return str(record.get("messageId"))
    return None


# Under SnapStart the snapshot holds the clients (evreserve_lambda/snapstart.py).
snapstart.install(_get_clients)


@logger.inject_lambda_context(clear_state=True, log_event=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    clients = _get_clients()
    records = event.get("Records") or []
    if not records:
        return {"batchItemFailures": []}
    # The attempts of a batch run side by side: ten slow receivers take 10 s, not 100.
    with ThreadPoolExecutor(max_workers=len(records)) as pool:
        failed = [mid for mid in pool.map(lambda record: _handle(clients, record), records) if mid is not None]
    return {"batchItemFailures": [{"itemIdentifier": mid} for mid in failed]}
