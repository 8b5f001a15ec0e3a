"""The outbox's publisher: the reservations table's stream in, one event per stored state change out.

Lambda's DynamoDB event source hands this function the stream's records in order, retries
a batch that fails (bisecting it) and, past its retries, sends the batch's description to
the failure queue. So an event is published only once its change is stored, and a crash
anywhere loses nothing: the stream keeps the change for 24 hours. Delivery is at least once;
the event id is derived from the change (``evreserve.events.event_id``), the same on every
retry, and receivers dedupe on it.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger

from evreserve import aws
from evreserve.events import EVENT_SOURCE, event_type
from evreserve.storage.stream import reservation_images
from evreserve_lambda.events import event_body
from evreserve_lambda.settings import PublisherSettings

logger = Logger()

#: PutEvents takes at most 10 entries a request.
PUT_EVENTS_MAX = 10


_events: Any = None
_settings: PublisherSettings | None = None


def _client() -> tuple[Any, PublisherSettings]:
    global _events, _settings
    if _events is None or _settings is None:
        _settings = PublisherSettings()
        _events = aws.events_client(_settings)
    return _events, _settings


def use_client(client: Any, settings: PublisherSettings) -> None:
    """Replace the EventBridge client (tests)."""
    global _events, _settings
    _events, _settings = client, settings


def entries_of(records: list[dict[str, Any]], bus: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(sequence number, reservation key, PutEvents entry) of each record that is an event, in stream order."""
    entries = []
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
        entry = {"Source": EVENT_SOURCE, "DetailType": kind.value, "Detail": json.dumps(body), "EventBusName": bus}
        entries.append((sequence, f"{after.account_id}/{after.reservation_id}", entry))
    return entries


def chunks(entries: list[tuple[str, str, dict[str, Any]]]) -> list[list[tuple[str, str, dict[str, Any]]]]:
    """PutEvents calls: at most 10 entries, and never two of one reservation in one call.

    EventBridge may refuse some entries of a call and publish the rest; the retry starts
    at the first refused one. Were a later change of the same reservation in that call, it
    would go out before the earlier one.
    """
    calls: list[list[tuple[str, str, dict[str, Any]]]] = []
    current: list[tuple[str, str, dict[str, Any]]] = []
    keys: set[str] = set()
    for entry in entries:
        if len(current) == PUT_EVENTS_MAX or entry[1] in keys:
            calls.append(current)
            current, keys = [], set()
        current.append(entry)
        keys.add(entry[1])
    if current:
        calls.append(current)
    return calls


@logger.inject_lambda_context(clear_state=True, log_event=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    client, settings = _client()
    entries = entries_of(event.get("Records") or [], settings.event_bus_name)
    for chunk in chunks(entries):
        try:
            answer = client.put_events(Entries=[entry for _, _, entry in chunk])
        except Exception:
            logger.exception("PutEvents failed; the stream delivers the batch again from here")
            return {"batchItemFailures": [{"itemIdentifier": chunk[0][0]}]}
        # The stream is in order: retrying from the first refused entry re-sends the ones
        # after it too (same ids), and never skips one.
        results = answer.get("Entries", [])
        refused = [seq for (seq, _, _), result in zip(chunk, results, strict=False) if "ErrorCode" in result]
        if refused:
            logger.warning("EventBridge refused events; retried", extra={"refused": len(refused)})
            return {"batchItemFailures": [{"itemIdentifier": refused[0]}]}
    if entries:
        logger.info("published reservation events", extra={"events": len(entries)})
    return {"batchItemFailures": []}
