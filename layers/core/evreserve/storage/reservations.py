"""Reservation records and their state transitions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..aws import ClientError, unavailable_on_transport_errors
from ..lifecycle import Transition
from ..models import Reservation, ReservationState
from ..resources import ACTIVE_BY_CHARGER, ACTIVE_BY_EXPIRY, ACTIVE_ON, EXPIRES_IN, EXPIRY_SHARDS, GSI1_PK, PK, SK
from . import keys
from .base import DynamoStore, is_condition_failure
from .codec import to_item
from .items import iso, reservation_from, reservation_item
from .paging import Key, Page, iter_query, read_page


def transition_update(account_id: int, reservation_id: int, transition: Transition, at: datetime) -> dict[str, Any]:
    """The conditional ``Update`` (for update_item or a transaction) that applies a lifecycle transition.

    Conditional on the current state being one the transition may leave, and on its
    guards (the command the record must still belong to, the charger it must be on).
    """
    names = {"#s": "state"}
    values: dict[str, Any] = {":to": {"S": transition.to.value}, ":at": {"S": iso(at)}}
    sets = ["#s = :to", "updatedAt = :at"]
    placeholders = []
    for i, state in enumerate(sorted(s.value for s in transition.leaves)):
        values[f":f{i}"] = {"S": state}
        placeholders.append(f":f{i}")
    condition = f"attribute_exists(pk) AND #s IN ({', '.join(placeholders)})"
    if transition.command_id is not None:
        values[":cid"] = {"S": transition.command_id}
        condition += " AND commandId = :cid"
    if transition.charger_id is not None:
        values[":ch"] = {"N": str(transition.charger_id)}
        condition += " AND chargerId = :ch"
    if transition.failure_code is not None:
        values[":fc"] = {"S": transition.failure_code}
        sets.append("failureCode = :fc")
    if transition.port is not None:
        # Only where it had none: a whole-charger reservation learns its port.
        values[":pid"] = {"N": str(transition.port[0])}
        values[":pn"] = {"N": str(transition.port[1])}
        sets.append("portId = if_not_exists(portId, :pid), portNumber = if_not_exists(portNumber, :pn)")
    removes = ""
    if transition.ends:
        sets.append("endedAt = :at")
        # Out of the index of active reservations: Authorize and port status read only those.
        names["#active"] = ACTIVE_ON
        names["#expires"] = EXPIRES_IN
        removes = " REMOVE #active, #expires"
    return {
        "Key": keys.reservation(account_id, reservation_id),
        "UpdateExpression": "SET " + ", ".join(sets) + removes,
        "ConditionExpression": condition,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


@dataclass(frozen=True, slots=True)
class Expiring:
    """An active reservation as the expiry sweep reads it (index ``activeByExpiry``)."""

    account_id: int
    reservation_id: int
    command_id: str
    expiry: datetime
    state: ReservationState
    answer_by: datetime | None


class ReservationStore(DynamoStore):
    def __init__(self, client: Any, table: str, retention_days: int = 90) -> None:
        super().__init__(client, table)
        #: Kept this long after its expiryDate, ended or not (RESERVATION_RETENTION_DAYS), then TTL.
        self.retention_days = retention_days

    def _expires_at(self, reservation: Reservation) -> int:
        return int((reservation.expiry_date + timedelta(days=self.retention_days)).timestamp())

    def get(self, account_id: int, reservation_id: int) -> Reservation | None:
        item = self._get(keys.reservation(account_id, reservation_id))
        return reservation_from(item) if item else None

    def transition(self, account_id: int, reservation_id: int, transition: Transition, at: datetime) -> bool:
        """Apply a lifecycle transition; False when the record is missing or the transition does not apply."""
        update = transition_update(account_id, reservation_id, transition, at)
        try:
            with unavailable_on_transport_errors(self.service):
                self._client.update_item(TableName=self._table, **update)
        except ClientError as exc:
            if is_condition_failure(exc):
                return False
            raise
        return True

    def place(self, account_id: int, reservation_id: int, charger_id: int, port: tuple[int, int], at: datetime) -> bool:
        """Record the port (id, number) an accepted whole-charger reservation turned out to hold."""
        try:
            with unavailable_on_transport_errors(self.service):
                self._client.update_item(
                    TableName=self._table,
                    Key=keys.reservation(account_id, reservation_id),
                    UpdateExpression="SET portId = :pid, portNumber = :pn, updatedAt = :at",
                    ConditionExpression="attribute_exists(pk) AND attribute_not_exists(portId) AND chargerId = :ch"
                    " AND #s = :accepted",
                    ExpressionAttributeNames={"#s": "state"},
                    ExpressionAttributeValues={
                        ":pid": {"N": str(port[0])},
                        ":pn": {"N": str(port[1])},
                        ":at": {"S": iso(at)},
                        ":ch": {"N": str(charger_id)},
                        ":accepted": {"S": ReservationState.ACCEPTED.value},
                    },
                )
        except ClientError as exc:
            if is_condition_failure(exc):
                return False
            raise
        return True

    def _by_charger(self, charger_id: int, start: Key | None, size: int) -> Iterator[tuple[Reservation, Key]]:
        for item, key in self._query_index(keys.reservations_by_charger_pk(charger_id), start, size):
            yield reservation_from(item), key

    def active_for_charger(self, charger_id: int) -> list[Reservation]:
        """A charger's Pending and Accepted reservations (the gateway's view: Authorize, port status).

        Read from the sparse index ``activeByCharger``: a charger's ended reservations,
        however many, cost nothing here. An accepted one past its expiryDate stays in the
        index until it is ended or its TTL removes it; callers apply ``lifecycle.is_active``.
        """
        items = self._query_all(ACTIVE_BY_CHARGER, ACTIVE_ON, keys.reservations_by_charger_pk(charger_id))
        return [reservation_from(item) for item in items]

    def expiring(self, before: datetime) -> list[Expiring]:
        """The active ones expiring before ``before``, soonest first.

        From the sparse index ``activeByExpiry`` (keys and the attributes of ``Expiring``
        only): ended reservations, however many, are not in it.
        """
        found: list[Expiring] = []
        for shard in range(EXPIRY_SHARDS):
            items = iter_query(
                self._client,
                start=None,
                page_size=1000,
                TableName=self._table,
                IndexName=ACTIVE_BY_EXPIRY,
                KeyConditionExpression="#e = :e AND expiryDate < :before",
                ExpressionAttributeNames={"#e": EXPIRES_IN},
                ExpressionAttributeValues={":e": {"S": f"EXPIRY#{shard}"}, ":before": {"S": iso(before)}},
            )
            for item, _ in items:
                answer_by = (item.get("answerBy") or {}).get("S")
                found.append(
                    Expiring(
                        int(item["accountId"]["N"]),
                        int(item["reservationId"]["N"]),
                        item["commandId"]["S"],
                        datetime.fromisoformat(item["expiryDate"]["S"]),
                        ReservationState(item["state"]["S"]),
                        datetime.fromisoformat(answer_by) if answer_by else None,
                    )
                )
        return sorted(found, key=lambda r: r.expiry)

    def create_request(
        self, reservation: Reservation, *, now: datetime, pending_stale_before: datetime
    ) -> dict[str, Any]:
        """A transaction ``Put`` recording a new (``Pending``) reservation, as ``lifecycle.replaceable`` allows.

        It fails (``ConditionalCheckFailed``) only when the same reservationId is
        active on a *different* port: accepted and not yet expired, or pending and not
        stale (a pending record older than ``pending_stale_before`` belongs to a request
        that died mid-wait and holds nothing). On the same port it replaces the record,
        as the charger replaces a reservation sent again with the same id (OCPP).
        """
        # lifecycle.same_place: the same port, or the same charger as a whole.
        if reservation.port_id is not None:
            same_place, place = "portId = :port", {":port": {"N": str(reservation.port_id)}}
        else:
            same_place = "(attribute_not_exists(portId) AND chargerId = :charger)"
            place = {":charger": {"N": str(reservation.charger_id)}}
        return {
            "Put": {
                "TableName": self._table,
                "Item": to_item(reservation_item(reservation, ttl=self._expires_at(reservation))),
                "ConditionExpression": (
                    f"attribute_not_exists(pk) OR {same_place}"
                    " OR (#s = :accepted AND expiryDate <= :now)"
                    " OR (#s = :pending AND updatedAt < :stale)"
                    " OR NOT #s IN (:accepted, :pending)"
                ),
                "ExpressionAttributeNames": {"#s": "state"},
                "ExpressionAttributeValues": {
                    **place,
                    ":accepted": {"S": ReservationState.ACCEPTED.value},
                    ":pending": {"S": ReservationState.PENDING.value},
                    ":now": {"S": iso(now)},
                    ":stale": {"S": iso(pending_stale_before)},
                },
            }
        }

    def page_for_account(
        self,
        account_id: int,
        *,
        limit: int,
        cursor: str | None,
        keep: Callable[[Reservation], bool],
        selective: bool = False,
    ) -> Page[Reservation]:
        """One page of an account's reservations in reservationId order."""
        pk = keys.reservation(account_id, 0)[PK]["S"]

        def source(start: Key | None, size: int) -> Iterator[tuple[Reservation, Key]]:
            for item, key in iter_query(
                self._client,
                start=start,
                page_size=size,
                TableName=self._table,
                KeyConditionExpression="#p = :p AND begins_with(#s, :s)",
                ExpressionAttributeNames={"#p": PK, "#s": SK},
                ExpressionAttributeValues={":p": {"S": pk}, ":s": {"S": "RES#"}},
            ):
                yield reservation_from(item), key

        return read_page(source, partition={PK: pk}, limit=limit, cursor=cursor, keep=keep, selective=selective)

    def page_for_charger(
        self,
        charger_id: int,
        account_id: int,
        *,
        limit: int,
        cursor: str | None,
        keep: Callable[[Reservation], bool],
        selective: bool = False,
    ) -> Page[Reservation]:
        """One page of a charger's reservations of one account, in reservationId order (index ``gsi1``).

        A charger re-registered by another account keeps its old records under the
        charger's index: only ``account_id``'s are returned.
        """
        return read_page(
            lambda start, size: self._by_charger(charger_id, start, size),
            partition={
                GSI1_PK: keys.reservations_by_charger_pk(charger_id),
                PK: keys.reservation(account_id, 0)[PK]["S"],
            },
            limit=limit,
            cursor=cursor,
            keep=lambda r: r.account_id == account_id and keep(r),
            selective=selective,
        )
