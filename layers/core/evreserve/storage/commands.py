"""The command ledger: what was asked of a charger, and its outcome, written exactly once.

Both sides of the command channel (``evreserve.channel``) use it: the API function
creates the record, together with whatever the command changes (the ``Pending``
reservation); the gateway (or the waiting function, on a timeout) completes it, in
the same transaction as the reservation's lifecycle transition, so the two never
disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import lifecycle
from ..errors import DependencyUnavailable, DomainError, IdempotencyConflict
from ..models import Command, CommandAction, CommandOutcome, OutcomeKind
from ..resources import TTL_ATTRIBUTE
from . import keys
from .base import ConditionsFailed, DynamoStore, transact
from .codec import serialize, to_item
from .items import command_from, command_item, outcome_data
from .reservations import transition_update

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def reservation_update_for(command: Command, outcome: CommandOutcome, at: datetime) -> dict[str, Any] | None:
    """The reservation update an outcome implies (``lifecycle``), or ``None``."""
    ref = command.reservation
    if ref is None:
        return None
    if command.action is CommandAction.RESERVE_NOW:
        transition: lifecycle.Transition | None = lifecycle.reserve_answered(outcome, command.command_id)
    else:
        transition = lifecycle.cancel_answered(outcome)
    if transition is None:
        return None
    return transition_update(ref.account_id, ref.reservation_id, transition, at)


@dataclass(frozen=True, slots=True)
class Submitted:
    command: Command
    #: False when an earlier identical request already created (and queued) it.
    created: bool


class CommandLedger(DynamoStore):
    """The command records (``CommandsTable``); completing one also moves its reservation."""

    def __init__(self, dynamodb: DynamoDBClient, commands_table: str, reservations_table: str) -> None:
        super().__init__(dynamodb, commands_table)
        self._reservations_table = reservations_table

    def get(self, command_id: str) -> Command | None:
        item = self._get(keys.command(command_id))
        return command_from(item) if item else None

    def _put_request(self, command: Command, ttl: int, now: datetime) -> dict[str, Any]:
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

    def _complete_request(self, command_id: str, outcome: CommandOutcome) -> dict[str, Any]:
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

    def budget_request(self, account_id: int, now: datetime, limit: int, window_s: int) -> dict[str, Any]:
        """A transaction ``Update`` counting one command of the account in the current window.

        Its condition fails once the account sent ``limit`` commands in the window: put in
        the command's own creation transaction, the count costs no extra request, and a
        plain retry (the command exists already) does not count again.
        """
        start = int(now.timestamp()) // window_s * window_s
        return {
            "Update": {
                "TableName": self._table,
                "Key": keys.commands_counter(account_id, start),
                "UpdateExpression": "ADD sent :one SET #ttl = if_not_exists(#ttl, :ttl)",
                "ConditionExpression": "attribute_not_exists(sent) OR sent < :limit",
                "ExpressionAttributeNames": {"#ttl": TTL_ATTRIBUTE},
                "ExpressionAttributeValues": {
                    ":one": {"N": "1"},
                    ":limit": {"N": str(limit)},
                    ":ttl": {"N": str(start + 2 * window_s)},
                },
            }
        }

    def create(
        self,
        command: Command,
        *,
        now: datetime,
        ttl: int,
        also: Sequence[dict[str, Any]] = (),
        on_conflict: Callable[[int], DomainError] | None = None,
        checks: int = 0,
    ) -> Submitted:
        """Create the command record together with ``also`` (transaction items).

        If a record for the same request already exists, that one is returned
        (``created=False``). ``on_conflict(i)`` turns a failed condition of ``also[i]``
        into the domain error to raise. The first ``checks`` items of ``also`` check what
        the request rests on (a remembered charger): their failure, or their item being
        inside another transaction, stands before an existing record, as a read before
        the transaction would have.
        """
        items = [self._put_request(command, ttl, now), *also]
        try:
            transact(self._client, items, self.service)
        except DependencyUnavailable as busy:
            # A check's item inside another transaction (a change of the charger being
            # written): the request reads it again, as if the check had failed.
            reasons = busy.details.get("reasons") or []
            held = [i for i, reason in enumerate(reasons) if reason == "TransactionConflict" and 1 <= i <= checks]
            if held and on_conflict is not None:
                raise on_conflict(min(held) - 1) from busy
            raise
        except ConditionsFailed as failure:
            failed_checks = [i for i in failure.items if 1 <= i <= checks]
            if failed_checks and on_conflict is not None:
                raise on_conflict(min(failed_checks) - 1) from failure
            if 0 in failure.items:
                existing = self.get(command.command_id)
                if existing is None:
                    raise DependencyUnavailable("command record vanished; retry") from failure
                if existing.request_hash != command.request_hash:
                    raise IdempotencyConflict("this idempotency key was used for a different request") from failure
                return Submitted(existing, created=False)
            if on_conflict is not None:
                raise on_conflict(min(failure.items) - 1) from failure
            raise DependencyUnavailable("could not record the command", items=sorted(failure.items)) from failure
        return Submitted(command, created=True)

    def complete(self, command: Command, outcome: CommandOutcome) -> CommandOutcome:
        """Write ``outcome`` unless one exists; return the outcome that stands.

        The command's effect on its reservation is written in the same transaction,
        so the two never disagree. If the reservation has moved on (replaced by a newer
        command, or already ended) the outcome is still written alone.
        """
        items: list[dict[str, Any]] = [self._complete_request(command.command_id, outcome)]
        update = reservation_update_for(command, outcome, outcome.completed_at)
        if update is not None:
            items.append({"Update": {"TableName": self._reservations_table, **update}})
        while True:
            try:
                transact(self._client, items, self.service)
                return outcome
            except ConditionsFailed as failure:
                if 0 in failure.items:
                    existing = self.get(command.command_id)
                    if existing is None or existing.outcome is None:
                        raise DependencyUnavailable("command record vanished while completing") from failure
                    return existing.outcome
                # Only the reservation's condition failed: it moved on; the outcome stands alone.
                items = items[:1]
