"""Domain rules of the models, the command envelope and the command-outcome transitions."""

from datetime import UTC, datetime, timedelta

import pytest

from evreserve import lifecycle
from evreserve.channel import CommandEnvelope
from evreserve.errors import InvalidRequest
from evreserve.models import (
    Command,
    CommandAction,
    CommandOutcome,
    OcppVersion,
    OutcomeKind,
    Reservation,
    ReservationRef,
    ReservationState,
)
from evreserve.storage.commands import reservation_update_for

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _reservation(state: ReservationState, expiry: datetime) -> Reservation:
    return Reservation(
        account_id=1,
        reservation_id=5,
        charger_id=2,
        port_id=3,
        port_number=1,
        id_tag="T",
        expiry_date=expiry,
        state=state,
        created_at=NOW,
        updated_at=NOW,
        command_id="c",
    )


def test_accepted_reservation_past_expiry_reads_as_expired():
    """An accepted reservation whose expiryDate has passed is never shown as active."""
    reservation = _reservation(ReservationState.ACCEPTED, NOW - timedelta(seconds=1))
    assert lifecycle.effective_state(reservation, NOW) is ReservationState.EXPIRED
    assert not lifecycle.is_active(reservation, NOW)


def test_accepted_reservation_before_expiry_is_active():
    """Before its expiry an accepted reservation is active."""
    assert lifecycle.is_active(_reservation(ReservationState.ACCEPTED, NOW + timedelta(minutes=5)), NOW)


def test_subprotocol_names():
    """OCPP versions map to and from their WebSocket subprotocol names."""
    assert OcppVersion.V201.subprotocol == "ocpp2.0.1"
    assert OcppVersion.from_subprotocol("ocpp1.6") is OcppVersion.V16
    with pytest.raises(ValueError):
        OcppVersion.from_subprotocol("ocpp2.1")


def _command(action: CommandAction) -> Command:
    return Command(
        command_id="c",
        account_id=1,
        charger_id=2,
        ocpp_id="CP",
        ocpp_version=OcppVersion.V16,
        action=action,
        payload={},
        instance_id="i",
        session_id="s",
        created_at=NOW,
        deadline=NOW,
        request_hash="h",
        reservation=ReservationRef(account_id=1, reservation_id=5),
    )


def _outcome(kind: OutcomeKind, status: str | None = None, code: str | None = None) -> CommandOutcome:
    return CommandOutcome(
        kind=kind,
        payload={"status": status} if status else None,
        error_code=code,
        completed_at=NOW,
        completed_by="i",
    )


@pytest.mark.parametrize(
    ("outcome", "state"),
    [
        (_outcome(OutcomeKind.RESULT, "Accepted"), "Accepted"),
        (_outcome(OutcomeKind.RESULT, "Occupied"), "Occupied"),
        (_outcome(OutcomeKind.CALL_ERROR, code="NotSupported"), "Rejected"),
        (_outcome(OutcomeKind.CALL_ERROR, code="InternalError"), "Failed"),
        (_outcome(OutcomeKind.TIMEOUT), "Failed"),
        (_outcome(OutcomeKind.OFFLINE), "Failed"),
    ],
)
def test_reserve_outcome_moves_pending_reservation(outcome, state):
    """A ReserveNow outcome moves the Pending reservation to the charger's answer, or Failed."""
    update = reservation_update_for(_command(CommandAction.RESERVE_NOW), outcome, NOW)
    assert update is not None
    assert update["ExpressionAttributeValues"][":to"] == {"S": state}
    assert update["ExpressionAttributeValues"][":cid"] == {"S": "c"}


def test_rejected_cancel_leaves_reservation_alone():
    """Only an Accepted CancelReservation ends the reservation."""
    command = _command(CommandAction.CANCEL_RESERVATION)
    assert reservation_update_for(command, _outcome(OutcomeKind.RESULT, "Rejected"), NOW) is None
    update = reservation_update_for(command, _outcome(OutcomeKind.RESULT, "Accepted"), NOW)
    assert update is not None and update["ExpressionAttributeValues"][":to"] == {"S": "Cancelled"}


def test_envelope_round_trip_and_rejects_unknown_version():
    """The SQS envelope carries the whole command and refuses versions it does not know."""
    envelope = CommandEnvelope(command=_command(CommandAction.RESERVE_NOW))
    assert CommandEnvelope.from_json(envelope.to_json()) == envelope
    with pytest.raises(InvalidRequest):
        CommandEnvelope.from_json(envelope.to_json().replace('"v":1', '"v":2'))
