"""The compiled validators give the library's verdict, and the direct answers obey the answer schemas."""

from __future__ import annotations

import copy

import ocpp.messages
import pytest
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallResult

from evreserve.models import OcppVersion
from evreserve_gateway.protocol import SESSION_CLASSES
from evreserve_gateway.protocol.schemas import SchemaViolation, request_validator, violation_code
from evreserve_gateway.protocol.session import EMPTY_ANSWER

LIBRARY_VERSION = {OcppVersion.V16: "1.6", OcppVersion.V201: "2.0.1"}
TS = "2026-11-23T10:00:00.000Z"

VALID = {
    (OcppVersion.V16, "MeterValues"): {
        "connectorId": 1,
        "transactionId": 7,
        "meterValue": [
            {
                "timestamp": TS,
                "sampledValue": [
                    {"value": "12.5", "measurand": "Energy.Active.Import.Register", "unit": "kWh"},
                    {"value": "7360", "measurand": "Power.Active.Import", "unit": "W", "phase": "L1"},
                ],
            }
        ],
    },
    (OcppVersion.V16, "StatusNotification"): {
        "connectorId": 2,
        "errorCode": "NoError",
        "status": "Available",
        "timestamp": TS,
        "info": "ok",
    },
    (OcppVersion.V201, "MeterValues"): {
        "evseId": 1,
        "meterValue": [{"timestamp": TS, "sampledValue": [{"value": 1.5, "measurand": "Power.Active.Import"}]}],
    },
    (OcppVersion.V201, "StatusNotification"): {
        "timestamp": TS,
        "connectorStatus": "Occupied",
        "evseId": 1,
        "connectorId": 1,
    },
}


def _integer_key(version: OcppVersion) -> str:
    """A required integer property of both actions."""
    return "connectorId" if version is OcppVersion.V16 else "evseId"


def _broken(version: OcppVersion, action: str) -> list[tuple[str, dict]]:
    """One violation per payload, of every kind the library tells apart."""
    valid = VALID[(version, action)]
    cases = []
    missing = copy.deepcopy(valid)
    del missing[_integer_key(version)]
    cases.append(("required property missing", missing))
    wrong_type = copy.deepcopy(valid)
    wrong_type[_integer_key(version)] = "one"
    cases.append(("wrong type", wrong_type))
    extra = {**copy.deepcopy(valid), "unknownField": 1}
    cases.append(("unknown property", extra))
    if action == "StatusNotification":
        key = "status" if version is OcppVersion.V16 else "connectorStatus"
        cases.append(("value outside the enum", {**valid, key: "Sleeping"}))
        if version is OcppVersion.V16:
            cases.append(("string too long", {**valid, "info": "x" * 51}))
    else:
        cases.append(("empty array", {**valid, "meterValue": []}))
    return cases


def _library_code(version: OcppVersion, action: str, payload: dict) -> str | None:
    try:
        ocpp.messages._validate_payload(Call("1", action, payload), LIBRARY_VERSION[version])
    except OCPPError as error:
        return str(error.code)
    return None


def _compiled_code(version: OcppVersion, action: str, payload: dict) -> str | None:
    try:
        request_validator(version, action)(payload)
    except SchemaViolation as violation:
        return violation_code(violation)
    return None


@pytest.mark.parametrize(("version", "action"), list(VALID))
def test_valid_payloads_pass_both(version, action):
    """A valid payload passes the compiled validator, as it passes the library's."""
    payload = VALID[(version, action)]
    assert _library_code(version, action, payload) is None
    assert _compiled_code(version, action, payload) is None


@pytest.mark.parametrize(("version", "action"), list(VALID))
def test_each_violation_gets_the_library_code(version, action):
    """GIVEN one violation of each kind WHEN validated THEN the code is the one the library raises."""
    for what, payload in _broken(version, action):
        expected = _library_code(version, action, payload)
        assert expected is not None, what
        assert _compiled_code(version, action, payload) == expected, what


@pytest.mark.parametrize("version", list(OcppVersion))
def test_timestamps_without_a_zone_are_accepted_like_the_library_does(version):
    """Formats are not checked: a charger sending a zoneless timestamp is not refused."""
    payload = {**VALID[(version, "StatusNotification")], "timestamp": "2026-11-23 10:00"}
    assert _library_code(version, "StatusNotification", payload) is None
    assert _compiled_code(version, "StatusNotification", payload) is None


@pytest.mark.parametrize("version", list(OcppVersion))
def test_direct_answers_are_valid_confirmations(version):
    """The constant answers of the directly answered CALLs obey the library's answer schemas."""
    session_class = SESSION_CLASSES[version]
    assert set(session_class._direct) == {"MeterValues", "StatusNotification"}
    for action in session_class._direct:
        result = CallResult("1", ocpp.messages.json.loads(EMPTY_ANSWER), action)
        ocpp.messages._validate_payload(result, LIBRARY_VERSION[version])  # raises if invalid
