"""The reservation rules of a simulated charger, without sockets or clocks."""

from datetime import UTC, datetime, timedelta

import pytest

from simulator.state import (
    CancelStatus,
    ChargerState,
    EndReason,
    PortError,
    PortStatus,
    ReservationEnded,
    ReserveStatus,
    StatusChanged,
    UnknownReservation,
    Version,
    parse_timestamp,
    wire_status,
)

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=15)


def reserve(state, rid, port, tag="TAG1", *, group=None, expires=LATER, unspecific=False, forced=None):
    return state.reserve(
        reservation_id=rid,
        port=port,
        id_tag=tag,
        group_id_tag=group,
        expires_at=expires,
        now=NOW,
        allow_unspecific=unspecific,
        forced=forced,
    )


def test_accepted_reservation_marks_the_port_reserved():
    """A ReserveNow on a free port is Accepted and reported as a change to Reserved."""
    state = ChargerState(2)
    status, events = reserve(state, 1001, 1)
    assert status is ReserveStatus.ACCEPTED
    assert state.ports[1].status is PortStatus.RESERVED
    assert events == [StatusChanged(1, PortStatus.RESERVED)]


def test_same_id_on_another_port_replaces_the_reservation():
    """Re-using a reservation id moves it: the old port is freed, the new one reserved."""
    state = ChargerState(2)
    reserve(state, 1001, 1)
    status, events = reserve(state, 1001, 2, tag="TAG2")
    assert status is ReserveStatus.ACCEPTED
    assert list(state.reservations) == [1001]
    assert state.reservations[1001].port == 2 and state.reservations[1001].id_tag == "TAG2"
    assert [p.status for p in state.ports.values()] == [PortStatus.AVAILABLE, PortStatus.RESERVED]
    assert StatusChanged(1, PortStatus.AVAILABLE) in events


def test_same_id_on_the_same_port_reports_no_status_flicker():
    """Replacing a reservation in place changes its data but sends no status change."""
    state = ChargerState(1)
    reserve(state, 1001, 1, expires=LATER)
    status, events = reserve(state, 1001, 1, expires=LATER + timedelta(hours=1))
    assert status is ReserveStatus.ACCEPTED
    assert state.reservations[1001].expires_at == LATER + timedelta(hours=1)
    assert not [e for e in events if isinstance(e, StatusChanged)]


def test_port_reserved_for_another_id_answers_occupied():
    """A second reservation id on a reserved port is Occupied and leaves the first in place."""
    state = ChargerState(2)
    reserve(state, 1001, 1)
    status, events = reserve(state, 1002, 1, tag="TAG1")
    assert status is ReserveStatus.OCCUPIED
    assert events == []
    assert list(state.reservations) == [1001]


@pytest.mark.parametrize(
    ("port_status", "answer"),
    [
        (PortStatus.FAULTED, ReserveStatus.FAULTED),
        (PortStatus.UNAVAILABLE, ReserveStatus.UNAVAILABLE),
        (PortStatus.CHARGING, ReserveStatus.OCCUPIED),
        (PortStatus.OCCUPIED, ReserveStatus.OCCUPIED),
    ],
)
def test_port_state_decides_the_refusal(port_status, answer):
    """A port that is not Available refuses with the status matching its state."""
    state = ChargerState(1)
    state.set_status(1, port_status)
    assert reserve(state, 1001, 1)[0] is answer


def test_unknown_port_is_rejected():
    """A connector/EVSE number the charger does not have is Rejected."""
    assert reserve(ChargerState(2), 1001, 3)[0] is ReserveStatus.REJECTED


def test_expiry_in_the_past_is_rejected():
    """A reservation that has already expired is not taken."""
    assert reserve(ChargerState(1), 1001, 1, expires=NOW)[0] is ReserveStatus.REJECTED


def test_connector_zero_is_rejected_unless_supported():
    """Without connector-0 / non-EVSE-specific support a port-less reservation is Rejected."""
    state = ChargerState(2)
    assert reserve(state, 1001, None)[0] is ReserveStatus.REJECTED
    assert state.reservations == {}


def test_connector_zero_keeps_one_port_free_when_supported():
    """A port-less reservation reserves no port but holds one free port back."""
    state = ChargerState(2)
    assert reserve(state, 1001, None, unspecific=True)[0] is ReserveStatus.ACCEPTED
    assert all(p.status is PortStatus.AVAILABLE for p in state.ports.values())
    assert reserve(state, 1002, 1)[0] is ReserveStatus.ACCEPTED
    assert reserve(state, 1003, 2)[0] is ReserveStatus.OCCUPIED


def test_forced_answer_changes_nothing():
    """A configured Occupied answer is returned even for a free port, and nothing is stored."""
    state = ChargerState(1)
    assert reserve(state, 1001, 1, forced=ReserveStatus.OCCUPIED) == (ReserveStatus.OCCUPIED, [])
    assert state.ports[1].status is PortStatus.AVAILABLE


def test_cancel_known_id_frees_the_port():
    """Cancelling a reservation is Accepted and puts its port back to Available."""
    state = ChargerState(1)
    reserve(state, 1001, 1)
    status, events = state.cancel(1001)
    assert status is CancelStatus.ACCEPTED
    assert state.ports[1].status is PortStatus.AVAILABLE
    assert events[0] == StatusChanged(1, PortStatus.AVAILABLE)


def test_cancel_unknown_id_is_rejected():
    """Cancelling an id the charger does not hold is Rejected."""
    assert ChargerState(1).cancel(42) == (CancelStatus.REJECTED, [])


def test_expiry_frees_the_port_and_reports_expired():
    """At its expiry time a reservation ends as Expired and the port becomes Available."""
    state = ChargerState(2)
    reserve(state, 1001, 1, expires=LATER)
    reserve(state, 1002, 2, expires=LATER + timedelta(minutes=1))
    assert state.expire(LATER - timedelta(seconds=1)) == []
    events = state.expire(LATER)
    assert StatusChanged(1, PortStatus.AVAILABLE) in events
    assert [e.reason for e in events if isinstance(e, ReservationEnded)] == [EndReason.EXPIRED]
    assert list(state.reservations) == [1002]
    assert state.next_expiry() == LATER + timedelta(minutes=1)


def test_faulted_port_ends_its_reservation_as_removed():
    """Setting a reserved port Faulted ends the reservation (2.0.1 reports it Removed)."""
    state = ChargerState(1)
    reserve(state, 1001, 1)
    events = state.set_status(1, PortStatus.FAULTED)
    assert state.reservations == {}
    assert [e.reason for e in events if isinstance(e, ReservationEnded)] == [EndReason.REMOVED]
    assert StatusChanged(1, PortStatus.FAULTED) in events


def test_remove_unknown_reservation_raises():
    """Removing an id that does not exist is an error for the caller, not a silent no-op."""
    with pytest.raises(UnknownReservation):
        ChargerState(1).remove(7)


def test_transaction_consumes_the_reservation_of_its_tag():
    """Starting with the reserved idTag (case-insensitive) consumes that reservation."""
    state = ChargerState(1)
    reserve(state, 1001, 1, tag="RFID001")
    tx, events = state.begin_transaction(1, "rfid001", None, NOW)
    assert tx.reservation_id == 1001
    assert state.reservations == {}
    assert state.ports[1].status is PortStatus.CHARGING
    assert [e.reason for e in events if isinstance(e, ReservationEnded)] == [EndReason.CONSUMED]


def test_transaction_via_parent_tag_consumes_a_group_reservation():
    """A driver whose parent idTag matches the reservation's parentIdTag may use it."""
    state = ChargerState(1)
    reserve(state, 1001, 1, tag="CARD-A", group="FLEET")
    tx, _ = state.begin_transaction(1, "CARD-B", "FLEET", NOW)
    assert tx.reservation_id == 1001


def test_transaction_by_another_tag_on_a_reserved_port_is_refused():
    """A port reserved for someone else does not start charging for a stranger."""
    state = ChargerState(1)
    reserve(state, 1001, 1, tag="RFID001")
    with pytest.raises(PortError):
        state.begin_transaction(1, "RFID999", None, NOW)
    assert 1001 in state.reservations


def test_transaction_consumes_a_connector_zero_reservation():
    """A port-less reservation is used by its driver on any port."""
    state = ChargerState(2)
    reserve(state, 1001, None, tag="RFID001", unspecific=True)
    tx, _ = state.begin_transaction(2, "RFID001", None, NOW)
    assert tx.reservation_id == 1001


def test_ending_a_transaction_frees_the_port():
    """Stopping a transaction puts the port back to Available."""
    state = ChargerState(1)
    state.begin_transaction(1, "RFID001", None, NOW)
    _, events = state.end_transaction(1)
    assert events == [StatusChanged(1, PortStatus.AVAILABLE)]


@pytest.mark.parametrize(
    ("status", "version", "wire"),
    [
        (PortStatus.CHARGING, Version.V201, "Occupied"),
        (PortStatus.RESERVED, Version.V201, "Reserved"),
        (PortStatus.OCCUPIED, Version.V16, "Preparing"),
        (PortStatus.CHARGING, Version.V16, "Charging"),
    ],
)
def test_wire_status_uses_each_versions_vocabulary(status, version, wire):
    """1.6 and 2.0.1 report the same port state with their own status values."""
    assert wire_status(status, version) == wire


def test_timestamp_without_offset_is_utc():
    """An OCPP dateTime without an offset is read as UTC, with Z accepted."""
    assert parse_timestamp("2030-01-01T12:00:00") == NOW
    assert parse_timestamp("2030-01-01T12:00:00Z") == NOW
