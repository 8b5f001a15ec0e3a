"""The reservations table's stream, read: a stream record's images as reservations."""

from __future__ import annotations

from typing import Any

from ..models import Reservation
from .items import reservation_from


def _reservation(image: dict[str, Any] | None) -> Reservation | None:
    if not image or image.get("entity", {}).get("S") != "reservation":
        return None
    return reservation_from(image)


def reservation_images(record: dict[str, Any]) -> tuple[Reservation | None, Reservation | None]:
    """(before, after) of one DynamoDB stream record of the reservations table (NEW_AND_OLD_IMAGES)."""
    change = record.get("dynamodb") or {}
    return _reservation(change.get("OldImage")), _reservation(change.get("NewImage"))
