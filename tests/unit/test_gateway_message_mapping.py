"""What the gateway makes of charger messages: pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from evreserve import lifecycle
from evreserve.models import IdTokenType, Reservation, ReservationState
from evreserve_gateway import charger_messages as msgs

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _reservation(port_number=1, state=ReservationState.ACCEPTED, id_tag="TAG", parent=None, expires_in_s=3600):
    return Reservation(
        account_id=1,
        reservation_id=port_number,
        charger_id=1,
        port_id=10 + port_number,
        port_number=port_number,
        id_tag=id_tag,
        parent_id_tag=parent,
        id_token_type=IdTokenType.ISO14443,
        expiry_date=NOW + timedelta(seconds=expires_in_s),
        state=state,
        created_at=NOW,
        updated_at=NOW,
        command_id="c",
    )


def test_timestamp_is_parsed_with_z():
    """An OCPP timestamp with Z is read as UTC."""
    assert msgs.parse_timestamp("2030-01-02T03:04:05.000Z", NOW) == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_garbage_timestamp_falls_back_to_now():
    """The schemas do not enforce date-time, so garbage becomes the receive time."""
    assert msgs.parse_timestamp("tomorrow", NOW) == NOW
    assert msgs.parse_timestamp(None, NOW) == NOW


def test_v16_status_keeps_error_code_and_info():
    """A 1.6 StatusNotification keeps the connector, status, errorCode, vendor code and info."""
    number, status = msgs.port_status_v16(
        {"connectorId": 2, "status": "Faulted", "errorCode": "GroundFailure", "vendorErrorCode": "E7", "info": "x"},
        NOW,
    )
    assert (number, status.status, status.error_code, status.vendor_error_code, status.info) == (
        2,
        "Faulted",
        "GroundFailure",
        "E7",
        "x",
    )


def test_faulted_port_ends_only_its_accepted_reservations():
    """Faulted ends the accepted reservation on that port, not pending ones or other ports'."""
    reservations = [_reservation(1), _reservation(2), _reservation(1, state=ReservationState.PENDING)]
    ended = lifecycle.ended_by_port_status(reservations, 1, "Faulted", NOW)
    assert [(r.port_number, r.state) for r in ended] == [(1, ReservationState.ACCEPTED)]


def test_connector_zero_unavailable_ends_every_reservation():
    """Connector 0 stands for the whole charger."""
    ended = lifecycle.ended_by_port_status([_reservation(1), _reservation(2)], 0, "Unavailable", NOW)
    assert len(ended) == 2


def test_available_ends_nothing():
    """Only Faulted and Unavailable end reservations."""
    assert lifecycle.ended_by_port_status([_reservation(1)], 1, "Available", NOW) == []


def test_group_token_matches_id_tag_case_insensitively():
    """Authorize finds the group of an active reservation for the idTag, ignoring case (CiString)."""
    token = msgs.group_token([_reservation(id_tag="Card-1", parent="FLEET")], "CARD-1", NOW)
    assert token == msgs.GroupToken("FLEET", "ISO14443")


def test_group_token_ignores_ended_and_expired_reservations():
    """Ended or expired reservations give no group."""
    reservations = [
        _reservation(id_tag="T", parent="G1", state=ReservationState.USED),
        _reservation(id_tag="T", parent="G2", expires_in_s=-1),
    ]
    assert msgs.group_token(reservations, "T", NOW) is None
