"""A reservation's lifecycle: every way its recorded state changes, decided here and nowhere else.

Pure: no I/O. Each cause of change is a function returning one ``Transition`` value
(the state it moves to, the states it may leave, whether the reservation ends, the
failure code, and which command or charger it must still belong to). Storage turns
that value into one conditional update (``ReservationStore.transition_update``); the
API functions and the gateway only call these functions and hand the value on.

::

    (new request) ──▶ Pending ──ReserveNow answered──▶ Accepted | Faulted | Occupied
        ▲                │                              | Rejected | Unavailable
        │                └─no answer (timeout, error,    (the charger's own status)
        │                  offline, expired)──▶ Failed
        │
        │            Pending/Accepted ──CancelReservation Accepted──▶ Cancelled
        │            Pending/Accepted ──transaction started (1.6 StartTransaction,
        │                               2.0.1 TransactionEvent reservationId)──▶ Used
        │            Pending/Accepted ──2.0.1 ReservationStatusUpdate──▶ Expired | Removed
        │                   Accepted ──its port (or connector 0) Faulted/Unavailable──▶ Removed
        │                   Accepted ──expiryDate passed──▶ Expired (derived when read)
        │
        └── the same reservationId sent again (``replaceable``): the charger replaces
            a reservation with the same id (OCPP 1.6; 2.0.1 H01.FR.02), so does the record.

Only ``Pending`` and ``Accepted`` are active; every other state is final.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from . import ocpp_mapping
from .errors import ChargerCallError, ChargerTimeout, DomainError
from .models import CommandOutcome, OutcomeKind, Reservation, ReservationState

S = ReservationState

#: States in which a reservation holds (or may yet hold) its port.
ACTIVE_STATES = frozenset({S.PENDING, S.ACCEPTED})
#: States after which a reservation never changes again.
FINAL_STATES = frozenset(S) - ACTIVE_STATES
#: A ReserveNow answer: the charger's own statuses.
ANSWERED_STATES = frozenset({S.ACCEPTED, S.FAULTED, S.OCCUPIED, S.REJECTED, S.UNAVAILABLE})

#: Port statuses that end the port's reservation (OCPP 1.6 Reservation profile; 2.0.1 H01.FR.16/17).
PORT_STATUSES_ENDING = frozenset({"Faulted", "Unavailable"})
#: How an accepted reservation can end after its ReserveNow was answered.
ENDED_LATER = frozenset({S.CANCELLED, S.EXPIRED, S.USED, S.REMOVED})

#: 2.0.1 ReservationStatusUpdate statuses, and the state each ends the reservation in.
STATUS_UPDATE_STATES = {"Expired": S.EXPIRED, "Removed": S.REMOVED}


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of a reservation's recorded state, as storage must apply it."""

    to: ReservationState
    #: The recorded states it may leave; in any other the change does not apply.
    leaves: frozenset[ReservationState]
    #: Whether the reservation ends with it (``endedAt`` is written).
    ends: bool
    #: For ``Failed``: the error code the API reported.
    failure_code: str | None = None
    #: Applies only while the record still belongs to this command: the late outcome
    #: of a replaced reservation must not overwrite its successor.
    command_id: str | None = None
    #: Applies only to a reservation on this charger: a charger reporting another
    #: charger's reservationId cannot end it.
    charger_id: int | None = None
    #: The port (id, number) the charger reported it on: recorded for a whole-charger
    #: reservation, which had none; a reservation's own port never changes.
    port: tuple[int, int] | None = None


def _to(
    state: ReservationState,
    leaves: frozenset[ReservationState],
    *,
    command_id: str | None = None,
    charger_id: int | None = None,
) -> Transition:
    return Transition(state, leaves, state in FINAL_STATES, command_id=command_id, charger_id=charger_id)


# -- the API's commands -------------------------------------------------------------------


def reserve_answered(outcome: CommandOutcome, command_id: str) -> Transition:
    """ReserveNow's outcome: ``Pending`` -> the charger's status, or ``Failed`` with the API's error code.

    A CALLERROR NotImplemented / NotSupported is the charger saying it has no
    reservation support, which the API answers (and records) as ``Rejected``.
    """
    try:
        state = S(ocpp_mapping.reserve_status(outcome).value)
    except DomainError as exc:
        return Transition(S.FAILED, frozenset({S.PENDING}), True, failure_code=exc.code, command_id=command_id)
    except ValueError:
        # A status outside the schema would have failed validation at the gateway;
        # recording it as failed keeps the record truthful if one slips through.
        return Transition(
            S.FAILED, frozenset({S.PENDING}), True, failure_code=ChargerCallError.code, command_id=command_id
        )
    return _to(state, frozenset({S.PENDING}), command_id=command_id)


def cancel_answered(outcome: CommandOutcome) -> Transition | None:
    """CancelReservation's outcome: Accepted cancels an active reservation; anything else changes nothing."""
    accepted = outcome.kind is OutcomeKind.RESULT and (outcome.payload or {}).get("status") == "Accepted"
    return _to(S.CANCELLED, ACTIVE_STATES) if accepted else None


# -- what the charger reports -----------------------------------------------------------


def transaction_started(charger_id: int) -> Transition:
    """A transaction started with the reservation's id (1.6 StartTransaction, 2.0.1 TransactionEvent): used."""
    return _to(S.USED, ACTIVE_STATES, charger_id=charger_id)


def status_updated(update_status: str, charger_id: int) -> Transition | None:
    """2.0.1 ReservationStatusUpdate: Expired or Removed end it; an unknown status changes nothing."""
    state = STATUS_UPDATE_STATES.get(update_status)
    return _to(state, ACTIVE_STATES, charger_id=charger_id) if state is not None else None


def port_status_reported(status: str, charger_id: int) -> Transition | None:
    """A port (or connector 0, the whole charger) went Faulted or Unavailable: its accepted reservations end."""
    if status not in PORT_STATUSES_ENDING:
        return None
    return _to(S.REMOVED, frozenset({S.ACCEPTED}), charger_id=charger_id)


def ended_by_port_status(
    reservations: Iterable[Reservation], port_number: int, status: str, now: datetime
) -> list[Reservation]:
    """The reservations a port status ends; port 0 stands for every port of the charger."""
    if status not in PORT_STATUSES_ENDING:
        return []
    return [
        r
        for r in reservations
        if r.state is S.ACCEPTED and is_active(r, now) and (port_number == 0 or r.port_number == port_number)
    ]


def placed_by_port_status(
    reservations: Iterable[Reservation], port_number: int, status: str, now: datetime
) -> Reservation | None:
    """The whole-charger reservation a port reported Reserved now holds, if that is certain.

    A charger holding a whole-charger reservation marks a port Reserved once that port is
    the one it keeps for the token (2.0.1 H01: the last available EVSE). The port is the
    reservation's when exactly one accepted whole-charger reservation is active and no
    reservation of that port is: otherwise the report says nothing certain.
    """
    if status != "Reserved" or port_number == 0:
        return None
    active = [r for r in reservations if r.state is S.ACCEPTED and is_active(r, now)]
    if any(r.port_number == port_number for r in active):
        return None
    whole = [r for r in active if r.port_number is None]
    return whole[0] if len(whole) == 1 else None


# -- time -----------------------------------------------------------------------------------


def expired(command_id: str) -> Transition:
    """The expiry sweep: an accepted reservation past its expiryDate is stored Expired.

    OCPP 1.6 has no message for it (the charger lets it lapse); a 2.0.1 charger's
    ReservationStatusUpdate may come first, and then this changes nothing. Guarded by the
    command, so a reservation replaced since the sweep read it is not touched.
    """
    return _to(S.EXPIRED, frozenset({S.ACCEPTED}), command_id=command_id)


def unanswered(command_id: str) -> Transition:
    """The expiry sweep meets a Pending record past its answer-by time: it is stored as read.

    Its outcome was never stored (the gateway and the waiting function both failed to):
    readers already see it Failed with ``UNANSWERED_CODE``; storing it so publishes
    ``reservation.failed`` and takes it out of the indexes of active reservations.
    """
    return Transition(S.FAILED, frozenset({S.PENDING}), True, failure_code=UNANSWERED_CODE, command_id=command_id)


#: The code a Pending record past its answer-by time is read with: nobody waits for the
#: charger's answer any more (the API answered 504), and none was recorded.
UNANSWERED_CODE = ChargerTimeout.code


def effective_state(reservation: Reservation, now: datetime) -> ReservationState:
    """The state as a caller should see it, time applied.

    An accepted reservation past its expiryDate has expired: OCPP 1.6 has no message
    for an expiry, so it is derived when read. A Pending one past its answer-by time
    is Failed: the outcome was never written (storage failed meanwhile, or the
    waiting function died), and the caller was answered 504; a real outcome written
    later replaces this reading.
    """
    if reservation.state is S.ACCEPTED and reservation.expiry_date <= now:
        return S.EXPIRED
    if reservation.state is S.PENDING and reservation.answer_by is not None and reservation.answer_by <= now:
        return S.FAILED
    return reservation.state


def effective_failure_code(reservation: Reservation, now: datetime) -> str | None:
    """The failure code as a caller should see it (``effective_state``'s companion)."""
    if reservation.state is S.PENDING and effective_state(reservation, now) is S.FAILED:
        return UNANSWERED_CODE
    return reservation.failure_code


def is_active(reservation: Reservation, now: datetime) -> bool:
    """Whether the reservation holds (or may yet hold) its port."""
    return effective_state(reservation, now) in ACTIVE_STATES


def ended_since(record: Reservation | None, command_id: str, now: datetime) -> bool:
    """Whether what ``command_id`` made of the reservation no longer stands (replaced, or ended later).

    A retry of that request must then ask the charger again instead of replaying the answer.
    """
    return record is None or record.command_id != command_id or effective_state(record, now) in ENDED_LATER


def undo_needed(record: Reservation | None, command_id: str) -> bool:
    """Whether a ReserveNow the charger accepted too late must be cancelled on the charger.

    Only while the record still belongs to that command and did not end Accepted (it
    was recorded Failed): then the charger holds a reservation the service does not.
    If a newer command for the same reservationId owns the record, the charger has
    replaced (or will replace) the reservation with that one, and a cancel would drop
    the reservation the record calls active. With no record there is nothing to agree with.
    """
    return record is not None and record.command_id == command_id and record.state is not S.ACCEPTED


# -- replacing a reservation by id --------------------------------------------------------


def same_place(existing: Reservation, port_id: int | None, charger_id: int) -> bool:
    """Whether a new request targets what the record holds: its port, or the same charger as a whole."""
    if port_id is not None:
        return existing.port_id == port_id
    return existing.port_id is None and existing.charger_id == charger_id


def replaceable(
    existing: Reservation | None, port_id: int | None, charger_id: int, now: datetime, pending_stale_before: datetime
) -> bool:
    """Whether a new request for the same reservationId may replace the record.

    Always in the same place (the same port, or the same charger as a whole: the charger
    replaces it too). Elsewhere only when the old one holds nothing: ended, accepted but
    expired, or pending so long that the request behind it died mid-wait.
    ``ReservationStore.create_request`` writes this rule as its condition.
    """
    if existing is None or same_place(existing, port_id, charger_id):
        return True
    if existing.state is S.ACCEPTED:
        return existing.expiry_date <= now
    if existing.state is S.PENDING:
        return existing.updated_at < pending_stale_before
    return True
