"""The API <-> OCPP version mapping (evreserve.ocpp_mapping): pure, both versions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from evreserve import ocpp_mapping
from evreserve.errors import ChargerCallError, ChargerOffline, ChargerTimeout, DependencyUnavailable
from evreserve.models import CancelStatus, CommandOutcome, IdTokenType, OcppVersion, OutcomeKind, ReserveStatus

EXPIRY = datetime(2030, 4, 1, 14, 0, tzinfo=UTC)


def outcome(kind: OutcomeKind, **fields: object) -> CommandOutcome:
    return CommandOutcome(kind=kind, completed_at=datetime.now(UTC), completed_by="test", **fields)  # type: ignore[arg-type]


def test_v16_reserve_now_payload():
    """OCPP 1.6 gets connectorId/expiryDate/idTag/reservationId and parentIdTag as is."""
    payload = ocpp_mapping.reserve_now_payload(
        OcppVersion.V16, reservation_id=1001, port_number=2, expiry_date=EXPIRY, id_tag="RFID001", parent_id_tag="GRP"
    )
    assert payload == {
        "connectorId": 2,
        "expiryDate": "2030-04-01T14:00:00.000Z",
        "idTag": "RFID001",
        "reservationId": 1001,
        "parentIdTag": "GRP",
    }


def test_v16_ignores_id_token_type():
    """idTokenType is ignored for OCPP 1.6, as the spec says."""
    payload = ocpp_mapping.reserve_now_payload(
        OcppVersion.V16,
        reservation_id=1,
        port_number=1,
        expiry_date=EXPIRY,
        id_tag="A",
        id_token_type=IdTokenType.ISO14443,
    )
    assert "type" not in str(payload) and "idToken" not in payload


def test_v201_reserve_now_payload_defaults_to_central():
    """OCPP 2.0.1 gets id/expiryDateTime/idToken{type Central}/evseId."""
    payload = ocpp_mapping.reserve_now_payload(
        OcppVersion.V201, reservation_id=7, port_number=3, expiry_date=EXPIRY, id_tag="TOKEN"
    )
    assert payload == {
        "id": 7,
        "expiryDateTime": "2030-04-01T14:00:00.000Z",
        "idToken": {"idToken": "TOKEN", "type": "Central"},
        "evseId": 3,
    }


def test_v201_maps_parent_id_tag_to_group_id_token():
    """parentIdTag becomes groupIdToken (same token type) instead of being dropped."""
    payload = ocpp_mapping.reserve_now_payload(
        OcppVersion.V201,
        reservation_id=7,
        port_number=1,
        expiry_date=EXPIRY,
        id_tag="TOKEN",
        parent_id_tag="FLEET",
        id_token_type=IdTokenType.ISO14443,
    )
    assert payload["idToken"] == {"idToken": "TOKEN", "type": "ISO14443"}
    assert payload["groupIdToken"] == {"idToken": "FLEET", "type": "ISO14443"}


def test_cancel_payload_same_in_both_versions():
    """CancelReservation carries only reservationId."""
    assert ocpp_mapping.cancel_reservation_payload(1001) == {"reservationId": 1001}


@pytest.mark.parametrize("status", [s.value for s in ReserveStatus])
def test_reserve_status_passes_the_chargers_answer(status: str):
    """Every ReserveNow status of the spec's table is passed through."""
    answer = outcome(OutcomeKind.RESULT, payload={"status": status})
    assert ocpp_mapping.reserve_status(answer) is ReserveStatus(status)


@pytest.mark.parametrize("code", ["NotImplemented", "NotSupported"])
def test_no_reservation_support_is_rejected(code: str):
    """A CALLERROR NotImplemented / NotSupported to ReserveNow yields Rejected."""
    assert ocpp_mapping.reserve_status(outcome(OutcomeKind.CALL_ERROR, error_code=code)) is ReserveStatus.REJECTED


def test_other_call_errors_are_charger_errors():
    """Any other CALLERROR is a ChargerCallError carrying the OCPP code."""
    with pytest.raises(ChargerCallError) as caught:
        ocpp_mapping.reserve_status(outcome(OutcomeKind.CALL_ERROR, error_code="InternalError"))
    assert caught.value.ocpp_code == "InternalError"


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        (OutcomeKind.TIMEOUT, ChargerTimeout),
        (OutcomeKind.EXPIRED, ChargerTimeout),
        (OutcomeKind.OFFLINE, ChargerOffline),
        (OutcomeKind.NOT_SENT, DependencyUnavailable),
    ],
)
def test_no_answer_outcomes_raise(kind: OutcomeKind, error: type[Exception]):
    """Outcomes without an answer become the documented errors."""
    with pytest.raises(error):
        ocpp_mapping.reserve_status(outcome(kind))


@pytest.mark.parametrize("status", ["Accepted", "Rejected"])
def test_cancel_status(status: str):
    """CancelReservation's answer is passed through."""
    assert ocpp_mapping.cancel_status(outcome(OutcomeKind.RESULT, payload={"status": status})) is CancelStatus(status)


def test_cancel_not_implemented_is_an_error_not_rejected():
    """Only ReserveNow maps NotImplemented to Rejected; a cancel reports the CALLERROR."""
    with pytest.raises(ChargerCallError):
        ocpp_mapping.cancel_status(outcome(OutcomeKind.CALL_ERROR, error_code="NotImplemented"))
