"""What every DynamoDB store shares: an injected client and error translation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..aws import error_code, unavailable_on_transport_errors

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def is_condition_failure(exc: ClientError) -> bool:
    return error_code(exc) == "ConditionalCheckFailedException"


def cancellation_reasons(exc: ClientError) -> list[str]:
    """The per-item reason codes of a cancelled transaction, in request order."""
    reasons: Any = exc.response.get("CancellationReasons", [])
    return [str(r.get("Code", "None")) for r in reasons]


class DynamoStore:
    """Base of the stores: holds the client and the table name."""

    service = "DynamoDB"

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    @property
    def table(self) -> str:
        return self._table

    def _get(self, key: dict[str, Any], consistent: bool = True) -> dict[str, Any] | None:
        with unavailable_on_transport_errors(self.service):
            answer = self._client.get_item(TableName=self._table, Key=key, ConsistentRead=consistent)
        item: dict[str, Any] | None = answer.get("Item")
        return item
