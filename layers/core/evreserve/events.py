"""Reservation events: the home of which stored change of a reservation is which event, and its id.

Each change of a reservation's state is published once it is stored (the outbox is the
reservations table's stream: docs/decisions.md). This module decides, from the state
before and after a stored change, whether it is an event and which one; the body is the
reservation as ``GET /api/ocpp/reservations/{reservationId}`` shows it after the change,
built where the API's views live (``evreserve_lambda``).

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Final

from .models import Reservation, ReservationState

#: EventBridge ``Source`` of every event.
EVENT_SOURCE: Final = "evreserve"


class EventType(StrEnum):
    ACCEPTED = "reservation.accepted"
    #: The charger answered Faulted, Occupied, Rejected or Unavailable.
    REFUSED = "reservation.refused"
    #: Sent, but no definite answer came (timeout, charger error, offline).
    FAILED = "reservation.failed"
    CANCELLED = "reservation.cancelled"
    USED = "reservation.used"
    EXPIRED = "reservation.expired"
    #: The charger ended it: its port Faulted / Unavailable, ReservationStatusUpdate Removed.
    REMOVED = "reservation.removed"


_BY_STATE: Final[dict[ReservationState, EventType]] = {
    ReservationState.ACCEPTED: EventType.ACCEPTED,
    ReservationState.FAULTED: EventType.REFUSED,
    ReservationState.OCCUPIED: EventType.REFUSED,
    ReservationState.REJECTED: EventType.REFUSED,
    ReservationState.UNAVAILABLE: EventType.REFUSED,
    ReservationState.FAILED: EventType.FAILED,
    ReservationState.CANCELLED: EventType.CANCELLED,
    ReservationState.USED: EventType.USED,
    ReservationState.EXPIRED: EventType.EXPIRED,
    ReservationState.REMOVED: EventType.REMOVED,
}


def event_type(before: Reservation | None, after: Reservation | None) -> EventType | None:
    """The event a stored change makes, if any.

    A new record (``Pending``: the request is on its way) is none; neither is a write that
    leaves the state as it was, nor a record's deletion (its retention ran out). A record
    replaced under the same reservationId (a retry after Failed) starts again at Pending.
    """
    if after is None:
        return None
    if before is not None and before.state is after.state and before.created_at == after.created_at:
        return None
    return _BY_STATE.get(after.state)


def event_id(after: Reservation) -> str:
    """The event's id, the same however often the change is delivered to the publisher.

    Derived from what identifies the change (the reservation's incarnation and the state
    it reached, when), not from the delivery: receivers dedupe on it.
    """
    key = "|".join(
        (
            str(after.account_id),
            str(after.reservation_id),
            after.created_at.isoformat(),
            after.state.value,
            after.updated_at.isoformat(),
        )
    )
    return "evt_" + hashlib.sha256(key.encode()).hexdigest()[:32]
