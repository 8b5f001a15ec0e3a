"""The reservation events' body: the reservation exactly as the API's GET shows it after the change."""

from __future__ import annotations

from typing import Any

from evreserve.events import EventType, event_id
from evreserve.models import Reservation

from .responses import ReservationView


def event_body(kind: EventType, after: Reservation) -> dict[str, Any]:
    """``{id, type, createdAt, accountId, data}``; ``data`` as GET showed it at the change.

    The view is taken at the change's own time, so a retried delivery has the same body
    (a view taken later would already show an accepted reservation as expired).
    """
    data = ReservationView.of(after, after.updated_at).model_dump(mode="json", by_alias=True)
    return {
        "id": event_id(after),
        "type": kind.value,
        # The change's time, written as the API writes every time.
        "createdAt": data["updatedAt"],
        "accountId": after.account_id,
        "data": data,
    }
