"""What the gateway makes of charger-initiated messages: pure functions, no I/O.

The OCPP session (``protocol``) calls these with the handler's snake_case kwargs
and hands the results to a ``ChargerEvents`` implementation (``reports``), which does
the storage side.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from evreserve import lifecycle
from evreserve.access_ids import Group, Verdict
from evreserve.models import BootInfo, IdTokenType, OcppStatus, Reservation


class ChargerEvents(Protocol):
    """The storage side of one connected charger, as its OCPP session sees it.

    The ``record_*`` methods must return at once (they write in the background) so
    the charger's answer never waits on storage.
    """

    def record_boot(self, boot: BootInfo) -> None: ...

    def record_port_status(self, port_number: int, status: OcppStatus) -> None: ...

    def record_reservation_used(self, reservation_id: int, port_number: int | None = None) -> None:
        """A transaction started with this reservation's id (1.6 StartTransaction, 2.0.1 TransactionEvent),
        on ``port_number`` (the connector / EVSE it reported)."""

    def record_reservation_status_update(self, reservation_id: int, update_status: str) -> None:
        """2.0.1 ReservationStatusUpdate, as the charger sent it."""

    def expect_placement(self) -> None:
        """A whole-charger ReserveNow is being sent: a port reported Reserved may be where it lands."""

    async def authorize(self, id_tag: str) -> Verdict:
        """What the charger is told about a presented token (``access_ids.verdict``)."""

    def new_transaction_id(self) -> int: ...


def parse_timestamp(value: Any, now: datetime) -> datetime:
    """A charger's timestamp, or ``now`` when it sent none or garbage (schemas don't check format)."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return now
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return now


def boot_info_v16(kwargs: dict[str, Any], now: datetime) -> BootInfo:
    return BootInfo(
        vendor=kwargs.get("charge_point_vendor"),
        model=kwargs.get("charge_point_model"),
        serial_number=kwargs.get("charge_point_serial_number") or kwargs.get("charge_box_serial_number"),
        firmware_version=kwargs.get("firmware_version"),
        timestamp=now,
    )


def boot_info_v201(charging_station: dict[str, Any], now: datetime) -> BootInfo:
    return BootInfo(
        vendor=charging_station.get("vendor_name"),
        model=charging_station.get("model"),
        serial_number=charging_station.get("serial_number"),
        firmware_version=charging_station.get("firmware_version"),
        timestamp=now,
    )


def port_status_v16(payload: dict[str, Any], now: datetime) -> tuple[int, OcppStatus]:
    """(connectorId, status) from a validated StatusNotification payload (camelCase, as sent).

    Connector 0 is the charger as a whole.
    """
    return int(payload["connectorId"]), OcppStatus(
        status=payload["status"],
        timestamp=parse_timestamp(payload.get("timestamp"), now),
        error_code=payload.get("errorCode"),
        vendor_error_code=payload.get("vendorErrorCode"),
        info=payload.get("info"),
    )


def port_status_v201(payload: dict[str, Any], now: datetime) -> tuple[int, OcppStatus]:
    """(evseId, status) from a validated StatusNotificationRequest payload (camelCase, as sent).

    A port is an EVSE; each of its connectors keeps its own report (``connector_id``).
    """
    return int(payload["evseId"]), OcppStatus(
        status=payload["connectorStatus"],
        timestamp=parse_timestamp(payload.get("timestamp"), now),
        connector_id=int(payload["connectorId"]),
    )


@dataclass(frozen=True, slots=True)
class Held:
    """Whether a token holds an active reservation of the charger, and that reservation's group."""

    reserved: bool
    group: Group | None = None


def held_by(reservations: Iterable[Reservation], id_tag: str, now: datetime) -> Held:
    """What ``id_tag`` holds among the charger's reservations (idTags are case-insensitive).

    The group's 2.0.1 type is the reserved token's own, as the reservation gave it.
    """
    wanted = id_tag.casefold()
    reserved = False
    for reservation in reservations:
        if reservation.id_tag.casefold() != wanted or not lifecycle.is_active(reservation, now):
            continue
        reserved = True
        if reservation.parent_id_tag is not None:
            token_type = (reservation.id_token_type or IdTokenType.CENTRAL).value
            return Held(True, Group(reservation.parent_id_tag, token_type))
    return Held(reserved)


def id_tag_info_v16(verdict: Verdict) -> dict[str, Any]:
    """1.6 ``idTagInfo`` (snake_case, for the library's payload classes)."""
    info: dict[str, Any] = {"status": verdict.status.value}
    if verdict.group is not None:
        info["parent_id_tag"] = verdict.group.id_token
    return info


def id_token_info_v201(verdict: Verdict) -> dict[str, Any]:
    """2.0.1 ``idTokenInfo`` (snake_case, for the library's payload classes)."""
    info: dict[str, Any] = {"status": verdict.status.value}
    if verdict.group is not None:
        info["group_id_token"] = {"id_token": verdict.group.id_token, "type": verdict.group.type}
    return info
