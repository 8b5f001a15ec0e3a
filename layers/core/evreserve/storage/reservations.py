"""Reservation records and their state transitions."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from ..aws import unavailable_on_transport_errors
from ..models import Reservation, ReservationState
from ..resources import GSI1, GSI1_PK, PK, SK
from . import keys
from .base import DynamoStore, is_condition_failure
from .codec import to_item
from .items import iso, reservation_from, reservation_item
from .paging import Key, iter_query


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
    charger_id: int | None = None,
) -> dict[str, Any]:
    """An ``Update`` (for update_item or a transaction) moving a reservation between states.

    Conditional on the current state being one of ``allowed_from`` and, when
    ``command_id`` is given, on the record still belonging to that command, so that the
    late outcome of a replaced reservation cannot overwrite its successor. With
    ``charger_id``, also on the reservation being on that charger, so that a charger
    reporting another charger's reservationId cannot end it.
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
    if charger_id is not None:
        values[":ch"] = {"N": str(charger_id)}
        condition += " AND chargerId = :ch"
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
        charger_id: int | None = None,
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
            charger_id=charger_id,
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

    def create_request(
        self, reservation: Reservation, *, now: datetime, pending_stale_before: datetime
    ) -> dict[str, Any]:
        """A transaction ``Put`` recording a new (``Pending``) reservation.

        It fails (``ConditionalCheckFailed``) only when the same reservationId is
        active on a *different* port: accepted and not yet expired, or pending and not
        stale (a pending record older than ``pending_stale_before`` belongs to a request
        that died mid-wait and holds nothing). On the same port it replaces the record,
        as the charger replaces a reservation sent again with the same id (OCPP).
        """
        return {
            "Put": {
                "TableName": self._table,
                "Item": to_item(reservation_item(reservation)),
                "ConditionExpression": (
                    "attribute_not_exists(pk) OR portId = :port"
                    " OR (#s = :accepted AND expiryDate <= :now)"
                    " OR (#s = :pending AND updatedAt < :stale)"
                    " OR NOT #s IN (:accepted, :pending)"
                ),
                "ExpressionAttributeNames": {"#s": "state"},
                "ExpressionAttributeValues": {
                    ":port": {"N": str(reservation.port_id)},
                    ":accepted": {"S": ReservationState.ACCEPTED.value},
                    ":pending": {"S": ReservationState.PENDING.value},
                    ":now": {"S": iso(now)},
                    ":stale": {"S": iso(pending_stale_before)},
                },
            }
        }

    def iter_for_account(
        self, account_id: int, start: Key | None = None, page_size: int = 50
    ) -> Iterator[tuple[Reservation, Key]]:
        """An account's reservations in reservationId order, each with the key that resumes after it."""
        pk, sk = keys.reservation(account_id, 0)[PK]["S"], "RES#"
        for item, key in iter_query(
            self._client,
            start=start,
            page_size=page_size,
            TableName=self._table,
            KeyConditionExpression="#p = :p AND begins_with(#s, :s)",
            ExpressionAttributeNames={"#p": PK, "#s": SK},
            ExpressionAttributeValues={":p": {"S": pk}, ":s": {"S": sk}},
        ):
            yield reservation_from(item), key

    def iter_for_charger(
        self, charger_id: int, start: Key | None = None, page_size: int = 50
    ) -> Iterator[tuple[Reservation, Key]]:
        """A charger's reservations in reservationId order (index ``gsi1``), resumable."""
        for item, key in iter_query(
            self._client,
            start=start,
            page_size=page_size,
            TableName=self._table,
            IndexName=GSI1,
            KeyConditionExpression="#p = :p",
            ExpressionAttributeNames={"#p": GSI1_PK},
            ExpressionAttributeValues={":p": {"S": keys.reservations_by_charger_pk(charger_id)}},
        ):
            yield reservation_from(item), key
