"""What every DynamoDB store shares: an injected client and error translation."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..aws import ClientError, adopt, error_code, unavailable_on_transport_errors
from ..errors import DependencyUnavailable
from ..resources import GSI1, GSI1_PK
from .paging import Key, iter_query

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def is_condition_failure(exc: ClientError) -> bool:
    return error_code(exc) == "ConditionalCheckFailedException"


def cancellation_reasons(exc: ClientError) -> list[str]:
    """The per-item reason codes of a cancelled transaction, in request order."""
    reasons: Any = exc.response.get("CancellationReasons", [])
    return [str(r.get("Code", "None")) for r in reasons]


class ConditionsFailed(Exception):
    """A transaction was cancelled because the conditions of some of its items failed.

    Not a domain error: each caller knows what item ``i`` guards and raises the
    domain error that stands for it (see ``transact``).
    """

    def __init__(self, items: frozenset[int]) -> None:
        super().__init__(f"conditions failed on items {sorted(items)}")
        #: Positions, in request order, of the items whose condition failed.
        self.items = items


#: Pauses (each drawn between half and one and a half of it) before a transaction that
#: was cancelled only because another one held some of its items runs again. Commands of
#: one account all count on the account's rate items, so two at once meet there; a
#: cancelled transaction wrote nothing, so running it again is safe.
CONFLICT_RETRIES_S = (0.01, 0.03, 0.08)


def transact(client: DynamoDBClient, items: list[dict[str, Any]], service: str = "DynamoDB") -> None:
    """Write ``items`` in one transaction: the one place a cancelled transaction is interpreted.

    Failed conditions raise ``ConditionsFailed``. A cancellation only for conflicts with
    other transactions runs again after ``CONFLICT_RETRIES_S``; past them, and for any
    other reason (throttling), it is the table being busy, not the caller's fault:
    ``DependencyUnavailable``, which a retry may overcome.
    """
    pauses = iter(CONFLICT_RETRIES_S)
    while True:
        try:
            with unavailable_on_transport_errors(service):
                client.transact_write_items(TransactItems=items)  # type: ignore[arg-type]
            return
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            reasons = cancellation_reasons(exc)
            failed = frozenset(i for i, reason in enumerate(reasons) if reason == "ConditionalCheckFailed")
            if failed:
                raise ConditionsFailed(failed) from exc
            pause = next(pauses, None) if "TransactionConflict" in reasons else None
            if pause is None or not set(reasons) <= {"None", "TransactionConflict"}:
                raise DependencyUnavailable(
                    f"{service} cancelled the transaction", service=service, reasons=reasons
                ) from exc
            time.sleep(pause * random.uniform(0.5, 1.5))


class DynamoStore:
    """Base of the stores: holds the client and the table name."""

    service = "DynamoDB"

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = adopt(client)
        self._table = table

    @property
    def table(self) -> str:
        return self._table

    def _query_index(self, partition: str, start: Key | None, page_size: int) -> Iterator[tuple[dict[str, Any], Key]]:
        """The items of one ``gsi1`` partition in index order, each with the key that resumes after it."""
        return iter_query(
            self._client,
            start=start,
            page_size=page_size,
            TableName=self._table,
            IndexName=GSI1,
            KeyConditionExpression="#p = :p",
            ExpressionAttributeNames={"#p": GSI1_PK},
            ExpressionAttributeValues={":p": {"S": partition}},
        )

    def _query_all(self, index: str, attribute: str, value: str) -> list[dict[str, Any]]:
        """Every item of one partition of an index (for small partitions: a charger's, an instance's)."""
        found: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        while True:
            query: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": index,
                "KeyConditionExpression": "#a = :v",
                "ExpressionAttributeNames": {"#a": attribute},
                "ExpressionAttributeValues": {":v": {"S": value}},
            }
            if start:
                query["ExclusiveStartKey"] = start
            with unavailable_on_transport_errors(self.service):
                page = self._client.query(**query)
            found.extend(page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                return found

    def _get(self, key: dict[str, Any], consistent: bool = True) -> dict[str, Any] | None:
        with unavailable_on_transport_errors(self.service):
            answer = self._client.get_item(TableName=self._table, Key=key, ConsistentRead=consistent)
        item: dict[str, Any] | None = answer.get("Item")
        return item
