"""Every transition of a reservation's lifecycle (``evreserve.lifecycle``), on both OCPP versions.

One table: each row is what a charger of one version sends (or fails to send), the
transition it makes, and from which recorded states. Rows reach the lifecycle the
way the service does: command outcomes as the gateway records them, charger messages
through the gateway's own parsing (``charger_messages``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from evreserve import lifecycle
from evreserve.models import CommandOutcome, OcppVersion, OutcomeKind, Reservation, ReservationState
from evreserve_gateway import charger_messages as msgs

S = ReservationState
V16, V201 = OcppVersion.V16, OcppVersion.V201
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CHARGER = 12
COMMAND = "c-1"
ALL_STATES = frozenset(S)
ACTIVE = frozenset({S.PENDING, S.ACCEPTED})


def outcome(kind: OutcomeKind, **fields: Any) -> CommandOutcome:
    return CommandOutcome(kind=kind, completed_at=NOW, completed_by="gw-1", **fields)


def answered(status: str) -> CommandOutcome:
    return outcome(OutcomeKind.RESULT, payload={"status": status})


def call_error(code: str) -> CommandOutcome:
    return outcome(OutcomeKind.CALL_ERROR, error_code=code, error_description="")


def port_status(version: OcppVersion, port: int, status: str) -> lifecycle.Transition | None:
    """A StatusNotification as the charger sends it, parsed by the gateway, judged by the lifecycle."""
    if version is V16:
        payload = {"connectorId": port, "errorCode": "NoError", "status": status}
        _, parsed = msgs.port_status_v16(payload, NOW)
    else:
        payload = {"timestamp": "2026-06-01T12:00:00Z", "connectorStatus": status, "evseId": port, "connectorId": 1}
        _, parsed = msgs.port_status_v201(payload, NOW)
    return lifecycle.port_status_reported(parsed.status, CHARGER)


@dataclass(frozen=True)
class Row:
    version: OcppVersion
    what: str
    transition: Callable[[], lifecycle.Transition | None]
    #: ``None``: the message changes nothing.
    to: ReservationState | None
    leaves: frozenset[ReservationState] = frozenset()
    failure_code: str | None = None
    command_id: str | None = None
    charger_id: int | None = None


def reserve(answer: CommandOutcome) -> Callable[[], lifecycle.Transition | None]:
    return lambda: lifecycle.reserve_answered(answer, COMMAND)


PENDING = frozenset({S.PENDING})
TABLE = [
    # ReserveNow: the charger's answer, or Failed with the code the API answered.
    *[
        Row(v, f"ReserveNow answered {status}", reserve(answered(status)), S(status), PENDING, command_id=COMMAND)
        for v in (V16, V201)
        for status in ("Accepted", "Faulted", "Occupied", "Rejected", "Unavailable")
    ],
    *[
        Row(
            v,
            f"ReserveNow CALLERROR {code} (no reservation support)",
            reserve(call_error(code)),
            S.REJECTED,
            PENDING,
            command_id=COMMAND,
        )
        for v in (V16, V201)
        for code in ("NotImplemented", "NotSupported")
    ],
    *[
        Row(
            v,
            "ReserveNow CALLERROR GenericError",
            reserve(call_error("GenericError")),
            S.FAILED,
            PENDING,
            failure_code="CHARGER_ERROR",
            command_id=COMMAND,
        )
        for v in (V16, V201)
    ],
    *[
        Row(
            v,
            f"ReserveNow {kind.value}",
            reserve(outcome(kind)),
            S.FAILED,
            PENDING,
            failure_code=code,
            command_id=COMMAND,
        )
        for v in (V16, V201)
        for kind, code in (
            (OutcomeKind.TIMEOUT, "CHARGER_TIMEOUT"),
            (OutcomeKind.EXPIRED, "CHARGER_TIMEOUT"),
            (OutcomeKind.OFFLINE, "CHARGER_OFFLINE"),
            (OutcomeKind.NOT_SENT, "SERVICE_UNAVAILABLE"),
        )
    ],
    Row(
        V16,
        "ReserveNow answered a status outside the schema",
        reserve(answered("Maybe")),
        S.FAILED,
        PENDING,
        failure_code="CHARGER_ERROR",
        command_id=COMMAND,
    ),
    # CancelReservation.
    *[
        Row(
            v,
            "CancelReservation Accepted",
            lambda: lifecycle.cancel_answered(answered("Accepted")),
            S.CANCELLED,
            ACTIVE,
        )
        for v in (V16, V201)
    ],
    *[
        Row(v, f"CancelReservation {what}", lambda o=o: lifecycle.cancel_answered(o), None)
        for v in (V16, V201)
        for what, o in (
            ("Rejected", answered("Rejected")),
            ("timeout", outcome(OutcomeKind.TIMEOUT)),
            ("CALLERROR", call_error("GenericError")),
        )
    ],
    # Use: a transaction started with the reservation's id.
    Row(
        V16,
        "StartTransaction with reservationId",
        lambda: lifecycle.transaction_started(CHARGER),
        S.USED,
        ACTIVE,
        charger_id=CHARGER,
    ),
    Row(
        V201,
        "TransactionEvent with reservationId",
        lambda: lifecycle.transaction_started(CHARGER),
        S.USED,
        ACTIVE,
        charger_id=CHARGER,
    ),
    # 2.0.1 ReservationStatusUpdate.
    Row(
        V201,
        "ReservationStatusUpdate Expired",
        lambda: lifecycle.status_updated("Expired", CHARGER),
        S.EXPIRED,
        ACTIVE,
        charger_id=CHARGER,
    ),
    Row(
        V201,
        "ReservationStatusUpdate Removed",
        lambda: lifecycle.status_updated("Removed", CHARGER),
        S.REMOVED,
        ACTIVE,
        charger_id=CHARGER,
    ),
    Row(
        V201, "ReservationStatusUpdate NoTransaction (2.1)", lambda: lifecycle.status_updated("NoTransaction", 12), None
    ),
    # The expiry sweep: an accepted reservation past its expiryDate, whatever the charger said.
    *[
        Row(
            v,
            "expiryDate passed (the sweep)",
            lambda: lifecycle.expired(COMMAND),
            S.EXPIRED,
            frozenset({S.ACCEPTED}),
            command_id=COMMAND,
        )
        for v in (V16, V201)
    ],
    # The port goes out of service (1.6 connector 0 is the whole charger).
    *[
        Row(
            v,
            f"StatusNotification port {port} {status}",
            lambda v=v, port=port, status=status: port_status(v, port, status),
            S.REMOVED,
            frozenset({S.ACCEPTED}),
            charger_id=CHARGER,
        )
        for v, port in ((V16, 1), (V16, 0), (V201, 1))
        for status in ("Faulted", "Unavailable")
    ],
    *[
        Row(v, f"StatusNotification {status}", lambda v=v, status=status: port_status(v, 1, status), None)
        for v, statuses in (
            (V16, ("Available", "Preparing", "Charging", "Reserved", "Finishing")),
            (V201, ("Available", "Occupied", "Reserved")),
        )
        for status in statuses
    ],
]


@pytest.mark.parametrize("row", TABLE, ids=lambda r: f"{r.version.value}: {r.what}")
def test_transition(row: Row) -> None:
    """Each message makes exactly the transition of its row, from exactly the states listed."""
    transition = row.transition()
    if row.to is None:
        assert transition is None
        return
    assert transition == lifecycle.Transition(
        to=row.to,
        leaves=row.leaves,
        ends=row.to not in ACTIVE,
        failure_code=row.failure_code,
        command_id=row.command_id,
        charger_id=row.charger_id,
    )
    assert not transition.leaves & lifecycle.FINAL_STATES, "a final state never changes again"


def test_final_and_active_states_partition_every_state() -> None:
    """Pending and Accepted are active; every other state is final."""
    assert lifecycle.ACTIVE_STATES == ACTIVE
    assert lifecycle.FINAL_STATES == ALL_STATES - ACTIVE


def _reservation(
    state: ReservationState, *, port_id: int | None = 34, port_number: int | None = 1, **fields: Any
) -> Reservation:
    values: dict[str, Any] = {
        "account_id": 7,
        "reservation_id": 1001,
        "charger_id": CHARGER,
        "port_id": port_id,
        "port_number": port_number,
        "id_tag": "RFID001",
        "expiry_date": NOW + timedelta(hours=1),
        "state": state,
        "created_at": NOW - timedelta(minutes=1),
        "updated_at": NOW - timedelta(minutes=1),
        "command_id": COMMAND,
        **fields,
    }
    return Reservation(**values)


# -- expiry (derived when read: OCPP 1.6 has no message for it) -------------------------------


@pytest.mark.parametrize("state", sorted(S))
def test_expiry_applies_to_accepted_only(state: ReservationState) -> None:
    """Past its expiryDate an Accepted reservation reads as Expired; every other state reads as stored."""
    record = _reservation(state, expiry_date=NOW - timedelta(seconds=1))
    expected = S.EXPIRED if state is S.ACCEPTED else state
    assert lifecycle.effective_state(record, NOW) is expected
    assert lifecycle.is_active(record, NOW) == (expected in ACTIVE)


# -- which reservations a port status ends (more in test_gateway_message_mapping) --------------


def test_an_expired_reservation_is_not_ended_again() -> None:
    expired = _reservation(S.ACCEPTED, expiry_date=NOW - timedelta(seconds=1))
    assert lifecycle.ended_by_port_status([expired], 1, "Faulted", NOW) == []


# -- whether a request's reservation still stands (retries) -----------------------------------


@pytest.mark.parametrize(
    ("record", "ended"),
    [
        (None, True),
        (_reservation(S.ACCEPTED, command_id="another"), True),
        *[(_reservation(state), state in lifecycle.ENDED_LATER) for state in sorted(S)],
        (_reservation(S.ACCEPTED, expiry_date=NOW - timedelta(seconds=1)), True),
    ],
)
def test_ended_since(record: Reservation | None, ended: bool) -> None:
    """A retry replays the answer only while the reservation its command made stands as answered."""
    assert lifecycle.ended_since(record, COMMAND, NOW) is ended


@pytest.mark.parametrize(
    ("record", "undo"),
    [
        (None, False),
        (_reservation(S.FAILED), True),
        (_reservation(S.ACCEPTED), False),
        (_reservation(S.FAILED, command_id="a-retry"), False),
        (_reservation(S.ACCEPTED, command_id="a-retry"), False),
        (_reservation(S.PENDING, command_id="a-retry"), False),
    ],
)
def test_undo_needed(record: Reservation | None, undo: bool) -> None:
    """A late Accepted is undone on the charger only while the record is still that command's, not Accepted."""
    assert lifecycle.undo_needed(record, COMMAND) is undo


# -- replacing a reservation by its id -------------------------------------------------------------

STALE_BEFORE = NOW - timedelta(seconds=30)


@pytest.mark.parametrize(
    ("existing", "port_id", "allowed"),
    [
        (None, 34, True),
        *[(_reservation(state), 34, True) for state in sorted(S)],
        (_reservation(S.ACCEPTED), 35, False),
        (_reservation(S.ACCEPTED, expiry_date=NOW), 35, True),
        (_reservation(S.PENDING, updated_at=NOW), 35, False),
        (_reservation(S.PENDING, updated_at=STALE_BEFORE - timedelta(seconds=1)), 35, True),
        *[(_reservation(state), 35, True) for state in sorted(lifecycle.FINAL_STATES)],
    ],
)
def test_replaceable(existing: Reservation | None, port_id: int, allowed: bool) -> None:
    """The same reservationId replaces the record on its port, elsewhere only once the old one holds nothing."""
    assert lifecycle.replaceable(existing, port_id, CHARGER, NOW, STALE_BEFORE) is allowed


@pytest.mark.parametrize(
    ("existing", "port_id", "charger_id", "allowed"),
    [
        # A whole-charger reservation is in the same place only for the same charger as a whole.
        (_reservation(S.ACCEPTED, port_id=None, port_number=None), None, CHARGER, True),
        (_reservation(S.ACCEPTED, port_id=None, port_number=None), None, CHARGER + 1, False),
        (_reservation(S.ACCEPTED, port_id=None, port_number=None), 34, CHARGER, False),
        (_reservation(S.ACCEPTED), None, CHARGER, False),
        (_reservation(S.CANCELLED, port_id=None, port_number=None), 34, CHARGER, True),
    ],
)
def test_replaceable_for_whole_charger_reservations(existing, port_id, charger_id, allowed) -> None:
    assert lifecycle.replaceable(existing, port_id, charger_id, NOW, STALE_BEFORE) is allowed


def test_a_port_reported_reserved_places_the_one_whole_charger_reservation_only():
    whole = _reservation(S.ACCEPTED, port_id=None, port_number=None)
    other_whole = _reservation(S.ACCEPTED, port_id=None, port_number=None, reservation_id=1002)
    on_port_1 = _reservation(S.ACCEPTED, reservation_id=1003)
    assert lifecycle.placed_by_port_status([whole], 2, "Reserved", NOW) == whole
    assert lifecycle.placed_by_port_status([whole], 2, "Occupied", NOW) is None
    assert lifecycle.placed_by_port_status([whole], 0, "Reserved", NOW) is None
    assert lifecycle.placed_by_port_status([whole, other_whole], 2, "Reserved", NOW) is None  # which one?
    assert lifecycle.placed_by_port_status([whole, on_port_1], 1, "Reserved", NOW) is None  # port 1's own
    assert lifecycle.placed_by_port_status([whole, on_port_1], 2, "Reserved", NOW) == whole
    expired = _reservation(S.ACCEPTED, port_id=None, port_number=None, expiry_date=NOW)
    assert lifecycle.placed_by_port_status([expired], 2, "Reserved", NOW) is None


def test_only_connector_zero_ends_a_whole_charger_reservation():
    whole = _reservation(S.ACCEPTED, port_id=None, port_number=None)
    assert lifecycle.ended_by_port_status([whole], 1, "Faulted", NOW) == []
    assert lifecycle.ended_by_port_status([whole], 0, "Unavailable", NOW) == [whole]


# -- a Pending record nobody waits for any more ----------------------------------------------------


@pytest.mark.parametrize(
    ("answer_by", "state", "code"),
    [
        (None, S.PENDING, None),  # a record from before answer-by times: as stored
        (NOW + timedelta(seconds=1), S.PENDING, None),
        (NOW, S.FAILED, "CHARGER_TIMEOUT"),
        (NOW - timedelta(minutes=5), S.FAILED, "CHARGER_TIMEOUT"),
    ],
)
def test_pending_past_its_answer_by_time_reads_as_failed(answer_by, state, code) -> None:
    """Defect 2: an outcome never written (storage down) leaves Pending; past the API's deadline and grace
    it reads as Failed with CHARGER_TIMEOUT (what the caller was answered), and is not active."""
    record = _reservation(S.PENDING, answer_by=answer_by)
    assert lifecycle.effective_state(record, NOW) is state
    assert lifecycle.effective_failure_code(record, NOW) == code
    assert lifecycle.is_active(record, NOW) is (state is S.PENDING)


def test_a_real_outcome_replaces_the_reading() -> None:
    """Once the charger's outcome is written (Accepted), the answer-by time no longer matters."""
    record = _reservation(S.ACCEPTED, answer_by=NOW - timedelta(minutes=5))
    assert lifecycle.effective_state(record, NOW) is S.ACCEPTED
    assert lifecycle.effective_failure_code(record, NOW) is None
