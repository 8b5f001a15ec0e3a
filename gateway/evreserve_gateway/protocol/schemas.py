"""The home of the compiled validators: the ``ocpp`` library's own JSON schemas, compiled by fastjsonschema
(behind jsonschema-rs's quicker yes/no).

The library validates every payload with jsonschema's pure-Python ``Draft4Validator``,
which was ~40% of the CPU a MeterValues frame costs (``docs/performance.md``): about
100 µs for a two-sample MeterValues, where the compiled validator takes ~5 µs. The
frames that dominate a charger's traffic, and the gateway's own CALLs and their answers
(``outgoing_call``, ``validate_answer``: ~9% of the gateway's CPU per reservation went to
the library's validation of the ReserveNow and its answer), are validated here instead,
with the verdict the library would give:

* the same schema files (the library's package data, found by ``library.schema_path``,
  so there is one copy of the schemas and a library upgrade brings its fixes here too);
* Draft 4 for every version, as the library validates 2.0.1's draft-06 files;
* formats unchecked and no defaults filled in, as the library does (a charger whose
  timestamps lack a zone is accepted by both);
* a violation mapped to the CALLERROR code the library raises for it, and for the
  gateway's CALLs to the library's exception of that code;
* the three 1.6 payloads the library parses with Decimal floats for its ``multipleOf``
  checks left to the library (a float like 21.4 fails them otherwise).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, cast

import fastjsonschema
import jsonschema_rs
from ocpp.exceptions import FormatViolationError, OCPPError, ProtocolError, TypeConstraintViolationError
from ocpp.exceptions import NotImplementedError as NotImplementedByLibrary
from ocpp.messages import Call

from evreserve.models import OcppVersion

from . import library
from .library import OutgoingCall, schema_path

#: Raised by a compiled validator for a payload that breaks its schema.
SchemaViolation = fastjsonschema.JsonSchemaValueException

_DRAFT4 = "http://json-schema.org/draft-04/schema#"

#: The library's mapping (``ocpp.messages._validate_payload``) of a failed keyword to a
#: CALLERROR code, in 2.0.1's spelling; anything else is a FormatViolation.
_CODES = {
    "type": "TypeConstraintViolation",
    "additionalProperties": "FormatViolation",
    "required": "ProtocolError",
    "maxLength": "TypeConstraintViolation",
}


#: The library's exception for each CALLERROR code ``violation_code`` gives.
_ERRORS: dict[str, type[OCPPError]] = {
    "TypeConstraintViolation": TypeConstraintViolationError,
    "FormatViolation": FormatViolationError,
    "ProtocolError": ProtocolError,
}
#: 1.6 payloads the library validates with Decimal floats (``ocpp.messages._validate_payload``).
_DECIMAL_CALLS = frozenset({"SetChargingProfile", "RemoteStartTransaction"})
_DECIMAL_ANSWERS = frozenset({"GetCompositeSchedule"})


@functools.cache
def request_validator(version: OcppVersion, action: str) -> Callable[[Any], Any]:
    """The compiled validator of ``action``'s request payload; raises ``SchemaViolation``."""
    return _compile(version, action, answer=False)


@functools.cache
def answer_validator(version: OcppVersion, action: str) -> Callable[[Any], Any]:
    """The compiled validator of the answer (CALLRESULT) payload to ``action``."""
    return _compile(version, action, answer=True)


def _compile(version: OcppVersion, action: str, *, answer: bool) -> Callable[[Any], Any]:
    # 2.0.1's files start with a byte order mark.
    schema = json.loads(schema_path(version, action, answer=answer).read_text(encoding="utf-8-sig"))
    schema["$schema"] = _DRAFT4
    exact = fastjsonschema.compile(schema, use_default=False, use_formats=False)
    quick = jsonschema_rs.Draft4Validator(schema, validate_formats=False).is_valid

    def validate(payload: Any) -> None:
        # jsonschema-rs answers "valid?" ~9x sooner (a two-sample MeterValues: ~0.8 µs
        # against ~7.6); fastjsonschema judges only what it doubts, so every violation
        # is fastjsonschema's, with its keyword (the CALLERROR code). A payload it finds
        # valid after all stays valid: the two agree on every schema here
        # (tests/unit/test_gateway_ocpp_schemas.py compares them).
        try:
            if quick(payload):
                return
        except (ValueError, TypeError, OverflowError):
            pass  # a value jsonschema-rs cannot take (an integer over 64 bits): the exact check decides
        exact(payload)

    return validate


def outgoing_call(version: OcppVersion, message_id: str, action: str, payload: dict[str, Any]) -> OutgoingCall:
    """``library.outgoing_call`` with the compiled validator: the same CALL, the same ``OCPPError``."""
    if version is OcppVersion.V16 and action in _DECIMAL_CALLS:
        return library.outgoing_call(version, message_id, action, payload)
    _check(request_validator, version, action, payload)
    return cast(OutgoingCall, Call(message_id, action, payload))


def validate_answer(version: OcppVersion, message_id: str, action: str, payload: dict[str, Any]) -> None:
    """``library.validate_answer`` with the compiled validator; raises the same ``OCPPError``."""
    if version is OcppVersion.V16 and action in _DECIMAL_ANSWERS:
        library.validate_answer(version, message_id, action, payload)
        return
    _check(answer_validator, version, action, payload)


def _check(
    validator_of: Callable[[OcppVersion, str], Callable[[Any], Any]],
    version: OcppVersion,
    action: str,
    payload: dict[str, Any],
) -> None:
    try:
        validate = validator_of(version, action)
    except (OSError, ValueError):  # no schema: the library's answer for an action it cannot validate
        raise NotImplementedByLibrary(details={"cause": f"Failed to validate action: {action}"}) from None
    try:
        validate(payload)
    except SchemaViolation as violation:
        raise _ERRORS[violation_code(violation)](details={"cause": violation.message}) from None


def violation_code(violation: SchemaViolation) -> str:
    """The CALLERROR code (2.0.1 spelling) the library gives the same violation."""
    return _CODES.get(violation.rule or "", "FormatViolation")
