"""The API <-> OCPP version mapping: pure functions, no I/O.

Requests:

* OCPP 1.6 ``ReserveNow{connectorId, expiryDate, idTag, reservationId, parentIdTag?}``;
  ``idTokenType`` is ignored, as the public API documents.
* OCPP 2.0.1 ``ReserveNow{id, expiryDateTime, idToken{idToken, type}, evseId, groupIdToken?}``
  with ``type`` = ``idTokenType`` or ``Central``. ``parentIdTag`` becomes
  ``groupIdToken`` (of the same type) rather than being dropped: it is 2.0.1's
  spelling of the same group-reservation idea.
* ``CancelReservation{reservationId}`` in both versions.

Answers: a CALLRESULT's ``status`` is passed through; a CALLERROR ``NotImplemented`` or
``NotSupported`` to ReserveNow means "no reservation support" and becomes ``Rejected``;
anything else becomes a ``ChargerError`` subclass.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .errors import ChargerCallError, ChargerOffline, ChargerTimeout, DependencyUnavailable
from .models import (
    CancelStatus,
    CommandOutcome,
    IdTokenType,
    OcppVersion,
    OutcomeKind,
    ReserveStatus,
)

#: CALLERROR codes by which a charger says it has no reservation support.
NO_SUPPORT_CODES = frozenset({"NotImplemented", "NotSupported"})


def ocpp_datetime(value: datetime) -> str:
    """OCPP dateTime: UTC with millisecond precision and a ``Z``, what chargers parse most reliably."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def reserve_now_payload(
    version: OcppVersion,
    *,
    reservation_id: int,
    port_number: int | None,
    expiry_date: datetime,
    id_tag: str,
    parent_id_tag: str | None = None,
    id_token_type: IdTokenType | None = None,
) -> dict[str, Any]:
    """The ReserveNow payload for the charger's version, camelCase as on the wire.

    ``port_number`` ``None`` reserves the charger as a whole: 1.6 connectorId 0, 2.0.1
    without ``evseId`` (the station keeps one EVSE free for the token).
    """
    if version is OcppVersion.V16:
        payload: dict[str, Any] = {
            "connectorId": port_number or 0,
            "expiryDate": ocpp_datetime(expiry_date),
            "idTag": id_tag,
            "reservationId": reservation_id,
        }
        if parent_id_tag is not None:
            payload["parentIdTag"] = parent_id_tag
        return payload
    token_type = (id_token_type or IdTokenType.CENTRAL).value
    payload = {
        "id": reservation_id,
        "expiryDateTime": ocpp_datetime(expiry_date),
        "idToken": {"idToken": id_tag, "type": token_type},
    }
    if port_number is not None:
        payload["evseId"] = port_number
    if parent_id_tag is not None:
        payload["groupIdToken"] = {"idToken": parent_id_tag, "type": token_type}
    return payload


def reserves_whole_charger(payload: dict[str, Any]) -> bool:
    """Whether a ReserveNow payload (either version) reserves the charger as a whole."""
    if "connectorId" in payload:
        return bool(payload["connectorId"] == 0)
    return "evseId" not in payload


def cancel_reservation_payload(reservation_id: int) -> dict[str, Any]:
    return {"reservationId": reservation_id}


def _raise_for_failure(outcome: CommandOutcome) -> None:
    """Raise the ChargerError an outcome without a usable CALLRESULT stands for."""
    if outcome.kind is OutcomeKind.RESULT:
        return
    if outcome.kind is OutcomeKind.CALL_ERROR:
        code = outcome.error_code or "GenericError"
        raise ChargerCallError(
            f"The charger answered with the OCPP error {code}",
            ocpp_code=code,
            ocpp_description=outcome.error_description or "",
        )
    if outcome.kind is OutcomeKind.OFFLINE:
        raise ChargerOffline("The charger is not connected")
    if outcome.kind is OutcomeKind.NOT_SENT:
        raise DependencyUnavailable("The command could not be queued; retry the request")
    raise ChargerTimeout("The charger did not answer in time")


def _status_of(outcome: CommandOutcome) -> str:
    status = (outcome.payload or {}).get("status")
    if not isinstance(status, str):
        raise ChargerCallError("The charger's answer has no status", ocpp_code="FormationViolation")
    return status


def reserve_status(outcome: CommandOutcome) -> ReserveStatus:
    """The public answer to a reservation, or the ChargerError to report instead."""
    if outcome.kind is OutcomeKind.CALL_ERROR and outcome.error_code in NO_SUPPORT_CODES:
        return ReserveStatus.REJECTED
    _raise_for_failure(outcome)
    return ReserveStatus(_status_of(outcome))


def cancel_status(outcome: CommandOutcome) -> CancelStatus:
    _raise_for_failure(outcome)
    return CancelStatus(_status_of(outcome))
