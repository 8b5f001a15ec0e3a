"""The OCPP message log table: the home of its item shape, its batched writes and its newest-first reads.

One item per charger and batch (``evreserve.messagelog`` packs the frames)::

    pk    "C#{chargerId}"
    sk    "{newest message, ms since the epoch, 13 digits}#{batchId}"   (newest first = descending)
    acct  the charger's account (every read checks it again)
    ocpp  the charger's ocppId when the batch was logged
    proto "ocpp1.6" | "ocpp2.0.1"
    types the batch's OCPP actions (a filter skips batches without them, undecoded)
    first its oldest message (ms): a batch that starts after the range is skipped, undecoded
    v, z  the packing's version and the packed frames
    ttl   expiry, ``retention_days`` after the newest message
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..aws import ClientError, error_code, unavailable_on_transport_errors
from ..messagelog import (
    FORMAT_V1,
    SPAN_MAX_MS,
    LoggedMessage,
    MessagePage,
    MessageQuery,
    Record,
    StoredBatch,
    messages_of,
    newest_first,
    pack,
)
from ..resources import PK, SK, TTL_ATTRIBUTE
from .base import DynamoStore
from .paging import iter_query

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

#: BatchWriteItem's limit.
WRITE_BATCH = 25
#: Attempts at the items DynamoDB leaves unprocessed (throttling) before giving them up.
UNPROCESSED_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Batch:
    """A charger's logged CALLs, sealed by the gateway and ready to store."""

    batch_id: str
    charger_id: int
    account_id: int
    ocpp_id: str
    protocol: str
    records: Sequence[Record]

    @property
    def newest_ms(self) -> int:
        return max(r[0] for r in self.records)

    @property
    def oldest_ms(self) -> int:
        return min(r[0] for r in self.records)


def _partition(charger_id: int) -> str:
    return f"C#{charger_id}"


def _sort_key(at_ms: int, batch_id: str = "") -> str:
    return f"{at_ms:013d}#{batch_id}"


class MessageLogStore(DynamoStore):
    def __init__(self, client: DynamoDBClient, table: str, retention_days: int = 30) -> None:
        super().__init__(client, table)
        self._retention_s = retention_days * 86400

    def item(self, batch: Batch) -> dict[str, Any]:
        """The stored form of ``batch`` (public for the cost benchmark, which sizes it)."""
        newest = batch.newest_ms
        return {
            PK: {"S": _partition(batch.charger_id)},
            SK: {"S": _sort_key(newest, batch.batch_id)},
            "acct": {"N": str(batch.account_id)},
            "ocpp": {"S": batch.ocpp_id},
            "proto": {"S": batch.protocol},
            "types": {"SS": sorted({r[2] for r in batch.records})},
            "first": {"N": str(batch.oldest_ms)},
            "v": {"N": str(FORMAT_V1)},
            "z": {"B": pack(batch.records)},
            TTL_ATTRIBUTE: {"N": str(newest // 1000 + self._retention_s)},
        }

    def put(self, batches: Sequence[Batch]) -> list[str]:
        """Store the batches (25 a request); the ids of those DynamoDB would not take.

        Refused: still throttled after ``UNPROCESSED_ATTEMPTS``, or invalid (an item
        DynamoDB rejects, e.g. over its size limit: the others of its request are then
        written one by one, so one bad batch never holds the rest back). Raises
        ``DependencyUnavailable`` when DynamoDB cannot be reached: the caller decides
        whether to try again or drop.
        """
        refused: list[str] = []
        for start in range(0, len(batches), WRITE_BATCH):
            chunk = list(batches[start : start + WRITE_BATCH])
            try:
                refused += self._write([{"PutRequest": {"Item": self.item(b)}} for b in chunk])
            except ClientError as exc:
                if error_code(exc) != "ValidationException":
                    raise
                for batch in chunk:
                    try:
                        refused += self._write([{"PutRequest": {"Item": self.item(batch)}}])
                    except ClientError as single:
                        if error_code(single) != "ValidationException":
                            raise
                        refused.append(batch.batch_id)
        return refused

    def _write(self, requests: list[Any]) -> list[str]:
        for attempt in range(UNPROCESSED_ATTEMPTS):
            with unavailable_on_transport_errors(self.service):
                answer = self._client.batch_write_item(RequestItems={self._table: requests})
            requests = list(answer.get("UnprocessedItems", {}).get(self._table, []))
            if not requests:
                return []
            time.sleep(0.05 * 2**attempt)
        return [r["PutRequest"]["Item"][SK]["S"].split("#", 1)[1] for r in requests]

    def page(self, account_id: int, query: MessageQuery) -> MessagePage:
        """One page of ``query``, newest first, from the charger's batches of ``account_id`` only."""
        if query.end_ms < query.start_ms:
            # A cursor from before the range's start (the default range moved on): nothing
            # left, and DynamoDB refuses a BETWEEN whose bounds are reversed.
            return MessagePage([])
        return newest_first(query, self._batches(account_id, query))

    def _batches(self, account_id: int, query: MessageQuery) -> Iterator[StoredBatch]:
        names = {"#p": PK, "#s": SK}
        values: dict[str, Any] = {
            ":p": {"S": _partition(query.charger_id)},
            ":lo": {"S": _sort_key(query.start_ms)},
            # A batch holding a message at end_ms is keyed at most SPAN_MAX_MS later; "$" sorts after "#".
            ":hi": {"S": f"{query.end_ms + SPAN_MAX_MS:013d}$"},
            ":a": {"N": str(account_id)},
        }
        condition = "acct = :a"
        if query.types:
            alternatives = []
            for i, action in enumerate(sorted(query.types)):
                values[f":t{i}"] = {"S": action}
                alternatives.append(f"contains(types, :t{i})")
            condition += " AND (" + " OR ".join(alternatives) + ")"
        items = iter_query(
            self._client,
            start=None,
            # Batches are up to a few KB: 50 keeps a DynamoDB page small and the first answer quick.
            page_size=50,
            TableName=self._table,
            KeyConditionExpression="#p = :p AND #s BETWEEN :lo AND :hi",
            FilterExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ScanIndexForward=False,
        )
        for item, _ in items:
            yield _stored(item)


def _stored(item: dict[str, Any]) -> StoredBatch:
    key = item[SK]["S"]
    newest, batch_id = key.split("#", 1)
    blob = item["z"]["B"]
    version = int(item["v"]["N"])
    ocpp_id, protocol = item["ocpp"]["S"], item["proto"]["S"]

    def messages() -> list[LoggedMessage]:
        return messages_of(batch_id, blob, version, ocpp_id=ocpp_id, protocol=protocol)

    return StoredBatch(int(newest), int(item["first"]["N"]), messages)
