"""What the gateway makes of charger messages: pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from evreserve import lifecycle
from evreserve.access_ids import (
    AccessId,
    AuthorizationStatus,
    Group,
    TokenStatus,
    TokenType,
    UnknownTokenPolicy,
    Verdict,
    verdict,
)
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


def test_a_reservation_is_held_by_its_id_tag_in_any_case_with_its_group():
    """Authorize finds the active reservation held by the idTag, ignoring case (CiString), and its group."""
    held = msgs.held_by([_reservation(id_tag="Card-1", parent="FLEET")], "CARD-1", NOW)
    assert held == msgs.Held(True, Group("FLEET", "ISO14443"))
    assert msgs.held_by([_reservation(id_tag="Card-1")], "card-1", NOW) == msgs.Held(True, None)
    assert msgs.held_by([_reservation(id_tag="Card-1", parent="FLEET")], "Card-2", NOW) == msgs.Held(False)


def test_ended_and_expired_reservations_are_held_by_nobody():
    """Ended or expired reservations give no group."""
    reservations = [
        _reservation(id_tag="T", parent="G1", state=ReservationState.USED),
        _reservation(id_tag="T", parent="G2", expires_in_s=-1),
    ]
    assert msgs.held_by(reservations, "T", NOW) == msgs.Held(False)


def _token(status=AuthorizationStatus.AUTHORIZED, parent=None):
    return AccessId(
        access_id=1,
        account_id=7,
        ocpp_id_tag="T",
        type=TokenType.RFID,
        authorization_status=status,
        parent_id_tag=parent,
        created_at=NOW,
        updated_at=NOW,
    )


@pytest.mark.parametrize(
    ("registered", "held", "policy", "expected"),
    [
        # Registered: its own status and group; its group before the reservation's.
        (
            _token(parent="FLEET"),
            msgs.Held(False),
            UnknownTokenPolicy.ACCEPT,
            Verdict(TokenStatus.ACCEPTED, Group("FLEET")),
        ),
        (_token(), msgs.Held(False), UnknownTokenPolicy.REJECT, Verdict(TokenStatus.ACCEPTED)),
        (
            _token(parent="FLEET"),
            msgs.Held(True, Group("OTHER", "ISO14443")),
            UnknownTokenPolicy.ACCEPT,
            Verdict(TokenStatus.ACCEPTED, Group("FLEET")),
        ),
        (
            _token(),
            msgs.Held(True, Group("RES", "ISO14443")),
            UnknownTokenPolicy.ACCEPT,
            Verdict(TokenStatus.ACCEPTED, Group("RES", "ISO14443")),
        ),
        # Revoked: Blocked, even holding a reservation.
        (
            _token(AuthorizationStatus.REVOKED, "FLEET"),
            msgs.Held(True, Group("RES")),
            UnknownTokenPolicy.ACCEPT,
            Verdict(TokenStatus.BLOCKED),
        ),
        # Unknown: the policy, unless it holds a reservation.
        (None, msgs.Held(False), UnknownTokenPolicy.ACCEPT, Verdict(TokenStatus.ACCEPTED)),
        (None, msgs.Held(False), UnknownTokenPolicy.REJECT, Verdict(TokenStatus.INVALID)),
        (None, msgs.Held(True, Group("RES")), UnknownTokenPolicy.REJECT, Verdict(TokenStatus.ACCEPTED, Group("RES"))),
        (None, msgs.Held(True), UnknownTokenPolicy.REJECT, Verdict(TokenStatus.ACCEPTED)),
    ],
)
def test_the_verdict_on_a_token(registered, held, policy, expected):
    assert verdict(registered, held.group, reserved=held.reserved, policy=policy) == expected


def test_verdicts_map_to_each_versions_token_info():
    blocked, member = Verdict(TokenStatus.BLOCKED), Verdict(TokenStatus.ACCEPTED, Group("FLEET"))
    assert msgs.id_tag_info_v16(blocked) == {"status": "Blocked"}
    assert msgs.id_tag_info_v16(member) == {"status": "Accepted", "parent_id_tag": "FLEET"}
    assert msgs.id_token_info_v201(blocked) == {"status": "Blocked"}
    assert msgs.id_token_info_v201(member) == {
        "status": "Accepted",
        "group_id_token": {"id_token": "FLEET", "type": "Central"},
    }
