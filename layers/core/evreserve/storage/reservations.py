"""Reservation records and their state transitions."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from ..aws import unavailable_on_transport_errors
from ..models import Reservation, ReservationState
from ..resources import GSI1, GSI1_PK
from . import keys
from .base import DynamoStore, is_condition_failure
from .items import iso, reservation_from


def transition_update(
    account_id: int,
    reservation_id: int,
    to_state: ReservationState,
    *,
    allowed_from: Iterable[ReservationState],
    at: datetime,
    command_id: str | None = None,
    failure_code: str | None = None,
    ended: bool = False,
) -> dict[str, Any]:
    """An ``Update`` (for update_item or a transaction) moving a reservation between states.

    Conditional on the current state being one of ``allowed_from`` and, when
    ``command_id`` is given, on the record still belonging to that command, so that the
    late outcome of a replaced reservation cannot overwrite its successor.
    """
    names = {"#s": "state"}
    values: dict[str, Any] = {":to": {"S": to_state.value}, ":at": {"S": iso(at)}}
    sets = ["#s = :to", "updatedAt = :at"]
    allowed = sorted({s.value for s in allowed_from})
    placeholders = []
    for i, state in enumerate(allowed):
        values[f":f{i}"] = {"S": state}
        placeholders.append(f":f{i}")
    condition = f"attribute_exists(pk) AND #s IN ({', '.join(placeholders)})"
    if command_id is not None:
        values[":cid"] = {"S": command_id}
        condition += " AND commandId = :cid"
    if failure_code is not None:
        values[":fc"] = {"S": failure_code}
        sets.append("failureCode = :fc")
    if ended:
        sets.append("endedAt = :at")
    return {
        "Key": keys.reservation(account_id, reservation_id),
        "UpdateExpression": "SET " + ", ".join(sets),
        "ConditionExpression": condition,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


class ReservationStore(DynamoStore):
    def get(self, account_id: int, reservation_id: int) -> Reservation | None:
        item = self._get(keys.reservation(account_id, reservation_id))
        return reservation_from(item) if item else None

    def transition(
        self,
        account_id: int,
        reservation_id: int,
        to_state: ReservationState,
        *,
        allowed_from: Iterable[ReservationState],
        at: datetime,
        command_id: str | None = None,
        failure_code: str | None = None,
        ended: bool = False,
    ) -> bool:
        """Apply a transition; False when the record is missing or not in an allowed state."""
        update = transition_update(
            account_id,
            reservation_id,
            to_state,
            allowed_from=allowed_from,
            at=at,
            command_id=command_id,
            failure_code=failure_code,
            ended=ended,
        )
        try:
            with unavailable_on_transport_errors(self.service):
                self._client.update_item(TableName=self._table, **update)
        except ClientError as exc:
            if is_condition_failure(exc):
                return False
            raise
        return True

    def for_charger(self, charger_id: int) -> list[Reservation]:
        """Every reservation recorded for a charger (the gateway's view, e.g. for Authorize)."""
        found: list[Reservation] = []
        start: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": GSI1,
                "KeyConditionExpression": "#p = :p",
                "ExpressionAttributeNames": {"#p": GSI1_PK},
                "ExpressionAttributeValues": {":p": {"S": keys.reservations_by_charger_pk(charger_id)}},
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            with unavailable_on_transport_errors(self.service):
                page = self._client.query(**kwargs)
            found.extend(reservation_from(item) for item in page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                return found
