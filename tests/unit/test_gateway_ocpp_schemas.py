"""The compiled validators give the library's verdict, and the direct answers obey the answer schemas."""

from __future__ import annotations

import copy
import json
from typing import Any

import fastjsonschema
import ocpp.messages
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallResult

from evreserve.models import OcppVersion
from evreserve_gateway.protocol import SESSION_CLASSES, library, schemas
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


# -- the gateway's own CALLs and their answers ----------------------------------------------

_RESERVE = {
    OcppVersion.V16: {"connectorId": 1, "expiryDate": TS, "idTag": "RFID001", "reservationId": 7},
    OcppVersion.V201: {"id": 7, "expiryDateTime": TS, "idToken": {"idToken": "RFID001", "type": "ISO14443"}},
}


def _outgoing_cases() -> list[tuple[OcppVersion, str, bool, dict]]:
    """(version, action, answer?, payload): valid ones and one violation of each kind."""
    cases = []
    for version in OcppVersion:
        reserve = _RESERVE[version]
        id_key = "reservationId" if version is OcppVersion.V16 else "id"
        cases += [
            (version, "ReserveNow", False, reserve),
            (version, "ReserveNow", False, {k: v for k, v in reserve.items() if k != id_key}),
            (version, "ReserveNow", False, {**reserve, id_key: "seven"}),
            (version, "ReserveNow", False, {**reserve, "unknownField": 1}),
            (version, "CancelReservation", False, {"reservationId": 7}),
            (version, "CancelReservation", False, {"reservationId": 7.5}),
            (version, "CancelReservation", False, {}),
            (version, "ReserveNow", True, {"status": "Accepted"}),
            (version, "ReserveNow", True, {"status": "Maybe"}),
            (version, "ReserveNow", True, {"status": 1}),
            (version, "ReserveNow", True, {}),
            (version, "ReserveNow", True, {"status": "Accepted", "unknownField": 1}),
            (version, "CancelReservation", True, {"status": "Rejected"}),
            (version, "CancelReservation", True, {"status": "Occupied"}),
        ]
    cases.append((OcppVersion.V16, "ReserveNow", False, {**_RESERVE[OcppVersion.V16], "idTag": "x" * 21}))
    cases.append((OcppVersion.V201, "ReserveNow", False, {**_RESERVE[OcppVersion.V201], "evseId": "one"}))
    return cases


def _verdict(check: Any) -> tuple[str, str | None]:
    """('ok', frame) or (the OCPPError subclass raised, None)."""
    try:
        call = check()
    except OCPPError as error:
        return type(error).__name__, None
    return "ok", call.to_json() if call is not None else None


@pytest.mark.parametrize(("version", "action", "answer", "payload"), _outgoing_cases())
def test_the_gateway_calls_and_answers_get_the_library_verdict(
    version: OcppVersion, action: str, answer: bool, payload: dict
) -> None:
    """GIVEN a CALL the gateway sends (or its answer) WHEN validated by the compiled validators
    THEN it passes or fails as with the library, with the same exception, and the same frame."""
    ours = schemas.validate_answer if answer else schemas.outgoing_call
    theirs = library.validate_answer if answer else library.outgoing_call
    expected = _verdict(lambda: theirs(version, "m1", action, copy.deepcopy(payload)))
    assert _verdict(lambda: ours(version, "m1", action, copy.deepcopy(payload))) == expected


def test_an_action_without_a_schema_is_not_implemented_as_in_the_library() -> None:
    with pytest.raises(OCPPError) as raised:
        schemas.outgoing_call(OcppVersion.V16, "1", "NoSuchAction", {})
    assert raised.value.code == "NotImplemented"


def test_decimal_payloads_are_left_to_the_library() -> None:
    """1.6 SetChargingProfile's limits are multipleOf 0.1: 21.4 passes only with the library's Decimals."""
    profile = {
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": 1,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 21.4}],
            },
        },
    }
    assert _verdict(lambda: schemas.outgoing_call(OcppVersion.V16, "1", "SetChargingProfile", profile))[0] == "ok"


# -- jsonschema-rs's quick verdict against fastjsonschema's, on every schema ----------------


def _all_schemas() -> list[tuple[OcppVersion, str, bool]]:
    found = []
    for version in OcppVersion:
        folder = library.schema_path(version, "Heartbeat").parent
        for path in sorted(folder.glob("*.json")):
            name = path.stem
            answer = name.endswith("Response")
            action = name.removesuffix("Response") if answer else name.removesuffix("Request")
            if library.schema_path(version, action, answer=answer) == path:
                found.append((version, action, answer))
    return found


_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.0, 2.5, 2**63, -(2**63) - 1, "\ud800", ""]),
    st.text(max_size=8),
    st.just([]),
    st.just({}),
)


def _payloads(schema: dict[str, Any], root: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values shaped by ``schema`` (so that many are valid), with junk in any place (so that many are not)."""
    if "$ref" in schema:
        schema = root["definitions"][schema["$ref"].rsplit("/", 1)[-1]]
    kind = schema.get("type")
    shaped: st.SearchStrategy[Any]
    if "enum" in schema:
        shaped = st.sampled_from(schema["enum"])
    elif kind == "object" and depth < 6:
        properties = {k: _payloads(v, root, depth + 1) for k, v in schema.get("properties", {}).items()}
        required = [k for k in schema.get("required", []) if k in properties]
        optional = {k: v for k, v in properties.items() if k not in required}
        shaped = st.fixed_dictionaries({k: properties[k] for k in required}, optional=optional)
        extra = shaped.map(lambda d: {**d, "extra": 1})
        short = shaped.map(lambda d: dict(list(d.items())[1:]))
        shaped = _mostly(shaped, st.one_of(extra, short), one_in=5)
    elif kind == "array" and depth < 6:
        items = _payloads(schema.get("items", {}), root, depth + 1)
        shaped = st.lists(items, min_size=0, max_size=schema.get("maxItems", 3) + 1)
    elif kind == "string":
        limit = schema.get("maxLength")
        shaped = st.text(max_size=limit + 2) if limit else st.text(max_size=12)
        if limit:
            shaped = _mostly(shaped, st.sampled_from(["x" * limit, "x" * (limit + 1)]), one_in=5)
    elif kind == "integer":
        shaped = _mostly(st.integers(min_value=-5, max_value=2**31), st.sampled_from([1.0, 2.5, True]), one_in=5)
    elif kind == "number":
        shaped = st.one_of(st.integers(min_value=-5, max_value=10**6), st.floats(-1e6, 1e6), st.just(0.1))
    elif kind == "boolean":
        shaped = _mostly(st.booleans(), st.just(1), one_in=5)
    else:
        shaped = _JUNK
    # Junk in one place of ten: most payloads are valid or nearly so, where verdicts can differ.
    return _mostly(shaped, _JUNK, one_in=10)


def _mostly(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any], one_in: int) -> st.SearchStrategy[Any]:
    """``odd`` once in ``one_in`` draws, else ``usual`` (``st.one_of`` weighs its branches alike)."""
    return st.integers(min_value=1, max_value=one_in).flatmap(lambda n: odd if n == 1 else usual)


@pytest.mark.parametrize(("version", "action", "answer"), _all_schemas(), ids=lambda v: str(getattr(v, "value", v)))
def test_the_quick_verdict_never_differs_from_fastjsonschemas(version, action, answer):
    """The validators say "valid" first with jsonschema-rs; only a payload both call valid passes."""
    schema = json.loads(library.schema_path(version, action, answer=answer).read_text(encoding="utf-8-sig"))
    schema["$schema"] = "http://json-schema.org/draft-04/schema#"
    reference = fastjsonschema.compile(schema, use_default=False, use_formats=False)
    validate = (schemas.answer_validator if answer else schemas.request_validator)(version, action)

    def verdict(check: Any, payload: Any) -> bool:
        try:
            check(payload)
        except SchemaViolation:
            return False
        return True

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(_payloads(schema, schema))
    def compare(payload: Any) -> None:
        assert verdict(validate, payload) == verdict(reference, payload), payload

    compare()
