"""What a charger knows about its ports and reservations, without any I/O.

Every operation takes the current time as an argument and returns the events it
caused (port status changes, reservations that ended), so the rules can be tested
without sockets or clocks and the shell decides what to send for each event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum


class Version(StrEnum):
    V16 = "1.6"
    V201 = "2.0.1"

    @property
    def subprotocol(self) -> str:
        return f"ocpp{self.value}"


class PortStatus(StrEnum):
    """The union of the 1.6 ChargePointStatus and 2.0.1 ConnectorStatus values."""

    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"
    OCCUPIED = "Occupied"


_IN_USE_V16 = {
    PortStatus.PREPARING,
    PortStatus.CHARGING,
    PortStatus.SUSPENDED_EV,
    PortStatus.SUSPENDED_EVSE,
    PortStatus.FINISHING,
}


def wire_status(status: PortStatus, version: Version) -> str:
    """The status value a charger of `version` reports for `status`."""
    if version is Version.V201:
        # 2.0.1 folds the 1.6 charging sub-states into Occupied and reports
        # charging progress through TransactionEvent instead.
        return PortStatus.OCCUPIED.value if status in _IN_USE_V16 else status.value
    # 1.6 has no Occupied; a plugged-in but idle connector is Preparing.
    return PortStatus.PREPARING.value if status is PortStatus.OCCUPIED else status.value


class ReserveStatus(StrEnum):
    ACCEPTED = "Accepted"
    FAULTED = "Faulted"
    OCCUPIED = "Occupied"
    REJECTED = "Rejected"
    UNAVAILABLE = "Unavailable"


class CancelStatus(StrEnum):
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"


class EndReason(StrEnum):
    CANCELLED = "Cancelled"
    CONSUMED = "Consumed"
    EXPIRED = "Expired"
    REMOVED = "Removed"
    REPLACED = "Replaced"


class SimulatorError(Exception):
    """Base of the errors the simulator raises to its callers."""


class PortError(SimulatorError):
    """The port does not exist or cannot do what was asked in its current state."""


class UnknownReservation(SimulatorError):
    """No reservation has this id."""


@dataclass(frozen=True)
class Reservation:
    id: int
    port: int | None  # None: 1.6 connector 0 / 2.0.1 without evseId
    id_tag: str
    group_id_tag: str | None  # 1.6 parentIdTag / 2.0.1 groupIdToken
    expires_at: datetime

    def admits(self, id_tag: str, parent_id_tag: str | None = None) -> bool:
        """Whether a driver with `id_tag` (and its parent/group) may use this reservation."""
        # IdTokens are case-insensitive strings in both versions.
        offered = {t.casefold() for t in (id_tag, parent_id_tag) if t}
        held = {t.casefold() for t in (self.id_tag, self.group_id_tag) if t}
        return bool(offered & held)


@dataclass
class Transaction:
    port: int
    id_tag: str
    started_at: datetime
    reservation_id: int | None = None
    # 1.6: assigned by the CSMS in StartTransaction.conf; 2.0.1: chosen by the charger.
    transaction_id: int | str | None = None
    seq_no: int = 0


@dataclass
class Port:
    number: int
    status: PortStatus = PortStatus.AVAILABLE
    transaction: Transaction | None = None


@dataclass(frozen=True)
class StatusChanged:
    port: int
    status: PortStatus


@dataclass(frozen=True)
class ReservationEnded:
    reservation: Reservation
    reason: EndReason


Event = StatusChanged | ReservationEnded


@dataclass
class ChargerState:
    """Ports and reservations of one charger, and the rules a real charger applies to them."""

    port_count: int
    ports: dict[int, Port] = field(init=False)
    reservations: dict[int, Reservation] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.port_count < 1:
            raise ValueError("a charger needs at least one port")
        self.ports = {n: Port(n) for n in range(1, self.port_count + 1)}

    def reservation_on(self, port: int) -> Reservation | None:
        return next((r for r in self.reservations.values() if r.port == port), None)

    def next_expiry(self) -> datetime | None:
        return min((r.expires_at for r in self.reservations.values()), default=None)

    def reserve(
        self,
        *,
        reservation_id: int,
        port: int | None,
        id_tag: str,
        group_id_tag: str | None,
        expires_at: datetime,
        now: datetime,
        allow_unspecific: bool,
        forced: ReserveStatus | None = None,
    ) -> tuple[ReserveStatus, list[Event]]:
        """Apply a ReserveNow; `forced` answers that status instead of judging (Accepted still stores it)."""
        if forced is not None and forced is not ReserveStatus.ACCEPTED:
            return forced, []
        if expires_at <= now:
            return ReserveStatus.REJECTED, []
        if port is None and not allow_unspecific:
            return ReserveStatus.REJECTED, []
        if port is not None and port not in self.ports:
            return ReserveStatus.REJECTED, []
        if forced is None:
            verdict = self._judge(port, replacing=reservation_id)
            if verdict is not ReserveStatus.ACCEPTED:
                return verdict, []

        before = self._snapshot()
        events: list[Event] = []
        # The spec says the same id replaces the old reservation, whatever its port or tag.
        old = self.reservations.get(reservation_id)
        if old is not None:
            events.extend(self._drop(old, EndReason.REPLACED))
        self.reservations[reservation_id] = Reservation(reservation_id, port, id_tag, group_id_tag, expires_at)
        if port is not None:
            self.ports[port].status = PortStatus.RESERVED
        return ReserveStatus.ACCEPTED, self._changes(before) + events

    def cancel(self, reservation_id: int) -> tuple[CancelStatus, list[Event]]:
        reservation = self.reservations.get(reservation_id)
        if reservation is None:
            return CancelStatus.REJECTED, []
        before = self._snapshot()
        ended = self._drop(reservation, EndReason.CANCELLED)
        return CancelStatus.ACCEPTED, self._changes(before) + ended

    def remove(self, reservation_id: int) -> list[Event]:
        """End a reservation on the charger's own initiative (2.0.1 reports it as Removed)."""
        reservation = self.reservations.get(reservation_id)
        if reservation is None:
            raise UnknownReservation(f"no reservation {reservation_id}")
        before = self._snapshot()
        ended = self._drop(reservation, EndReason.REMOVED)
        return self._changes(before) + ended

    def expire(self, now: datetime) -> list[Event]:
        due = sorted((r for r in self.reservations.values() if r.expires_at <= now), key=lambda r: r.expires_at)
        before = self._snapshot()
        ended = [e for r in due for e in self._drop(r, EndReason.EXPIRED)]
        return self._changes(before) + ended

    def set_status(self, port: int, status: PortStatus) -> list[Event]:
        self._port(port)
        before = self._snapshot()
        ended: list[Event] = []
        reservation = self.reservation_on(port)
        # A reservation ends when its connector goes Faulted or Unavailable (1.6 and H01.FR.16/17).
        if reservation is not None and status in (PortStatus.FAULTED, PortStatus.UNAVAILABLE):
            ended = self._drop(reservation, EndReason.REMOVED)
        self.ports[port].status = status
        return self._changes(before) + ended

    def begin_transaction(
        self, port: int, id_tag: str, parent_id_tag: str | None, now: datetime
    ) -> tuple[Transaction, list[Event]]:
        """Start charging on `port`, consuming the reservation the driver holds, if any."""
        p = self._port(port)
        if p.transaction is not None:
            raise PortError(f"port {port} is already charging")
        if p.status not in (
            PortStatus.AVAILABLE,
            PortStatus.RESERVED,
            PortStatus.PREPARING,
            PortStatus.OCCUPIED,
        ):
            raise PortError(f"port {port} is {p.status}")
        held = self.reservation_on(port)
        if held is not None and not held.admits(id_tag, parent_id_tag):
            raise PortError(f"port {port} is reserved for another idTag")
        if held is None:
            held = next(
                (r for r in self.reservations.values() if r.port is None and r.admits(id_tag, parent_id_tag)),
                None,
            )
        before = self._snapshot()
        ended = self._drop(held, EndReason.CONSUMED) if held is not None else []
        tx = Transaction(port, id_tag, now, reservation_id=held.id if held is not None else None)
        p.transaction = tx
        p.status = PortStatus.CHARGING
        return tx, self._changes(before) + ended

    def end_transaction(self, port: int) -> tuple[Transaction, list[Event]]:
        p = self._port(port)
        if p.transaction is None:
            raise PortError(f"port {port} has no transaction")
        before = self._snapshot()
        tx, p.transaction = p.transaction, None
        p.status = PortStatus.RESERVED if self.reservation_on(port) else PortStatus.AVAILABLE
        return tx, self._changes(before)

    def _port(self, port: int) -> Port:
        try:
            return self.ports[port]
        except KeyError:
            raise PortError(f"no port {port} (ports are 1..{self.port_count})") from None

    def _free_ports(self, excluding: int | None = None) -> list[int]:
        return [
            n
            for n, p in self.ports.items()
            if n != excluding and p.status is PortStatus.AVAILABLE and p.transaction is None
        ]

    def _unspecific(self, replacing: int) -> int:
        return sum(1 for r in self.reservations.values() if r.port is None and r.id != replacing)

    def _judge(self, port: int | None, replacing: int) -> ReserveStatus:
        if port is None:
            # A reservation for "any connector" must leave one free port per such reservation.
            if len(self._free_ports()) > self._unspecific(replacing):
                return ReserveStatus.ACCEPTED
            statuses = {p.status for p in self.ports.values()}
            if statuses == {PortStatus.FAULTED}:
                return ReserveStatus.FAULTED
            if statuses == {PortStatus.UNAVAILABLE}:
                return ReserveStatus.UNAVAILABLE
            return ReserveStatus.OCCUPIED
        p = self.ports[port]
        if p.status is PortStatus.FAULTED:
            return ReserveStatus.FAULTED
        if p.status is PortStatus.UNAVAILABLE:
            return ReserveStatus.UNAVAILABLE
        held = self.reservation_on(port)
        if held is not None:
            # 1.6: "already reserved for the same or another idTag" is Occupied; only a
            # re-send of the same reservation id replaces it.
            return ReserveStatus.ACCEPTED if held.id == replacing else ReserveStatus.OCCUPIED
        if p.status is not PortStatus.AVAILABLE or p.transaction is not None:
            return ReserveStatus.OCCUPIED
        if len(self._free_ports(excluding=port)) < self._unspecific(replacing):
            return ReserveStatus.OCCUPIED
        return ReserveStatus.ACCEPTED

    def _drop(self, reservation: Reservation, reason: EndReason) -> list[Event]:
        del self.reservations[reservation.id]
        if reservation.port is not None and self.ports[reservation.port].status is PortStatus.RESERVED:
            self.ports[reservation.port].status = PortStatus.AVAILABLE
        return [ReservationEnded(reservation, reason)]

    def _snapshot(self) -> dict[int, PortStatus]:
        return {n: p.status for n, p in self.ports.items()}

    def _changes(self, before: dict[int, PortStatus]) -> list[Event]:
        # Compared end to end so that a replace on the same port is not reported as
        # Available then Reserved again.
        return [StatusChanged(n, p.status) for n, p in self.ports.items() if before[n] is not p.status]


def parse_timestamp(value: str) -> datetime:
    """Parse an OCPP dateTime; a value without an offset is taken as UTC."""
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def format_timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
