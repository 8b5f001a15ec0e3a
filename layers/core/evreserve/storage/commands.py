"""Command records: what was asked of a charger, and its outcome, written exactly once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..models import Command, CommandOutcome, OutcomeKind
from ..resources import TTL_ATTRIBUTE
from . import keys
from .base import DynamoStore
from .codec import serialize, to_item
from .items import command_from, command_item, outcome_data


class CommandStore(DynamoStore):
    def get(self, command_id: str) -> Command | None:
        item = self._get(keys.command(command_id))
        return command_from(item) if item else None

    def put_request(self, command: Command, ttl: int, now: datetime) -> dict[str, Any]:
        """A transaction ``Put`` creating the command record.

        It succeeds over a record of the same id only when that one has outlived its
        idempotency window (DynamoDB's TTL deletes lazily) or was never queued.
        """
        return {
            "Put": {
                "TableName": self._table,
                "Item": to_item(command_item(command, ttl)),
                "ConditionExpression": "attribute_not_exists(pk) OR #ttl < :now OR outcome.kind = :not_sent",
                "ExpressionAttributeNames": {"#ttl": TTL_ATTRIBUTE},
                "ExpressionAttributeValues": {
                    ":now": {"N": str(int(now.timestamp()))},
                    ":not_sent": {"S": OutcomeKind.NOT_SENT.value},
                },
            }
        }

    def complete_request(self, command_id: str, outcome: CommandOutcome) -> dict[str, Any]:
        """A transaction ``Update`` writing the outcome, only if none was written before."""
        return {
            "Update": {
                "TableName": self._table,
                "Key": keys.command(command_id),
                "UpdateExpression": "SET outcome = :o",
                "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(outcome)",
                "ExpressionAttributeValues": {":o": serialize(outcome_data(outcome))},
            }
        }
