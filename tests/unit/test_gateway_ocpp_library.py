"""What the gateway relies on in the ``ocpp`` library's private API (``protocol/library.py``), pinned.

An upgrade of ``ocpp`` that changes any of it fails here, next to the one module to fix.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import json
import logging
import re
import tomllib
from pathlib import Path
from typing import Any

import ocpp.messages
import pytest
from ocpp import exceptions
from ocpp.charge_point import ChargePoint
from ocpp.messages import Call, CallResult
from ocpp.routing import on as library_on
from ocpp.v16 import call_result as v16_result

from evreserve.models import OcppVersion
from evreserve_gateway.protocol.library import (
    LIBRARY_VERSIONS,
    LibraryHandlers,
    OCPPError,
    is_known_action,
    on,
    outgoing_call,
    schema_path,
    use_inline_validation,
    validate_answer,
)

GATEWAY_PROJECT = Path(__file__).parents[2] / "gateway" / "pyproject.toml"


class FakeConnection:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, message: str) -> None:
        self.sent.append(message)


class Point(LibraryHandlers):
    version = OcppVersion.V16

    @on("Heartbeat")
    def on_heartbeat(self, **kwargs: Any) -> Any:
        return v16_result.Heartbeat(current_time="2026-11-23T10:00:00.000Z")

    @on("Authorize")
    async def on_authorize(self, id_tag: str, **kwargs: Any) -> Any:
        return v16_result.Authorize(id_tag_info={"status": "Accepted", "parent_id_tag": id_tag.upper()})

    @on("DataTransfer")
    def on_data_transfer(self, **kwargs: Any) -> Any:
        raise ValueError("a bug")


def _point() -> tuple[Point, FakeConnection]:
    connection = FakeConnection()
    return Point("CP-1", connection, logging.LoggerAdapter(logging.getLogger("test"), {})), connection


# -- the version ------------------------------------------------------------------------


def test_the_installed_library_is_the_pinned_2_1_0():
    """The gateway pins ocpp 2.1.0, and that is the version installed (what everything below was read in)."""
    assert importlib.metadata.version("ocpp") == "2.1.0"
    dependencies = tomllib.loads(GATEWAY_PROJECT.read_text())["project"]["dependencies"]
    assert "ocpp==2.1.0" in dependencies


# -- ChargePoint, subclassed without its __init__ -----------------------------------------


def test_charge_point_signatures_are_the_ones_wrapped():
    """The skipped __init__, _handle_call and _send have the signatures the wrapper was written against."""
    assert list(inspect.signature(ChargePoint.__init__).parameters) == [
        "self",
        "id",
        "connection",
        "response_timeout",
        "logger",
    ]
    assert list(inspect.signature(ChargePoint._handle_call).parameters) == ["self", "msg"]
    assert inspect.iscoroutinefunction(ChargePoint._handle_call)
    assert list(inspect.signature(ChargePoint._send).parameters) == ["self", "message"]


def test_call_handling_reads_only_the_attributes_the_wrapper_sets():
    """_handle_call and _send read nothing of self that the skipped __init__ would have made and we do not."""
    read = set()
    for method in (ChargePoint._handle_call, ChargePoint._send):
        read |= set(re.findall(r"self\.(\w+)", inspect.getsource(method)))
    assert read == {"route_map", "_ocpp_version", "logger", "_send", "_connection", "id"}
    point, connection = _point()
    assert (point.id, point._connection, point._ocpp_version) == ("CP-1", connection, "1.6")
    assert not hasattr(point, "_response_queue")  # the base __init__ did not run


def test_on_marks_its_handler_with_the_attributes_routes_are_built_from():
    """@on leaves _on_action and _skip_schema_validation on the function it returns."""

    @library_on("Heartbeat", skip_schema_validation=True)
    def handler(**kwargs: Any) -> None: ...

    assert (handler._on_action, handler._skip_schema_validation) == ("Heartbeat", True)


def test_route_map_has_the_lookup_shape_handle_call_uses():
    """route_map[action] is {"_on_action", "_skip_schema_validation"}, the handler bound to the session."""
    point, _ = _point()
    assert "Heartbeat" in point.route_map and "MeterValues" not in point.route_map
    handlers = point.route_map["Heartbeat"]
    assert set(handlers) == {"_on_action", "_skip_schema_validation"}
    assert handlers["_on_action"].__self__ is point
    assert handlers["_skip_schema_validation"] is False
    with pytest.raises(KeyError):
        point.route_map["MeterValues"]
    assert point.handles("Heartbeat") and not point.handles("MeterValues")


async def test_handle_call_validates_runs_the_handler_and_sends_its_answer():
    """_handle_call passes snake_case kwargs, awaits an async handler, and sends the camelCase CALLRESULT
    through _send, which hands it back to the caller instead of the socket."""
    point, connection = _point()
    answer = await point.answer_by_library("1", "Authorize", {"idTag": "tag"})
    assert json.loads(answer) == [3, "1", {"idTagInfo": {"status": "Accepted", "parentIdTag": "TAG"}}]
    assert connection.sent == []


async def test_handle_call_raises_a_schema_violation_for_the_caller():
    """An invalid payload is raised out of _handle_call as an OCPPError, nothing sent."""
    point, connection = _point()
    with pytest.raises(exceptions.ProtocolError):
        await point.answer_by_library("1", "Authorize", {})
    assert connection.sent == []


async def test_handle_call_answers_a_failing_handler_itself():
    """A handler's non-OCPP exception is answered by the library with InternalError, not raised."""
    point, connection = _point()
    answer = await point.answer_by_library("1", "DataTransfer", {"vendorId": "V"})
    assert json.loads(answer)[:3] == [4, "1", "InternalError"]
    assert connection.sent == []


# -- validation -------------------------------------------------------------------------


def test_validate_payload_signature():
    """_validate_payload(message, ocpp_version) is synchronous; Call and CallResult build as used."""
    assert list(inspect.signature(ocpp.messages._validate_payload).parameters) == ["message", "ocpp_version"]
    assert not inspect.iscoroutinefunction(ocpp.messages._validate_payload)
    assert list(inspect.signature(Call).parameters) == ["unique_id", "action", "payload"]
    assert list(inspect.signature(CallResult).parameters) == ["unique_id", "payload", "action"]


@pytest.mark.parametrize(
    ("payload", "error", "code"),
    [
        ({}, exceptions.ProtocolError, "ProtocolError"),
        ({"reservationId": "one"}, exceptions.TypeConstraintViolationError, "TypeConstraintViolation"),
        ({"reservationId": 1, "extra": 1}, exceptions.FormatViolationError, "FormatViolation"),
    ],
)
@pytest.mark.parametrize("version", list(OcppVersion))
def test_validate_payload_raises_the_ocpp_error_of_each_violation(version, payload, error, code):
    """A bad request payload raises the OCPPError subclass (2.0.1 spelling) that becomes its CALLERROR."""
    with pytest.raises(error) as raised:
        outgoing_call(version, "1", "CancelReservation", payload)
    assert isinstance(raised.value, OCPPError) and raised.value.code == code


def test_validate_payload_refuses_an_action_without_a_schema_as_not_implemented():
    """An action the version has no schema for raises NotImplementedError (code NotImplemented)."""
    with pytest.raises(exceptions.NotImplementedError) as raised:
        outgoing_call(OcppVersion.V16, "1", "NoSuchAction", {})
    assert raised.value.code == "NotImplemented"


def test_outgoing_call_is_the_compact_call_frame():
    """A valid CALL is serialised by the library as [2, id, action, payload] without spaces."""
    call = outgoing_call(OcppVersion.V201, "1", "CancelReservation", {"reservationId": 7})
    assert call.to_json() == '[2,"1","CancelReservation",{"reservationId":7}]'


def test_answers_are_validated_against_the_answer_schema():
    """A CALLRESULT payload outside the answer schema raises FormatViolation; a valid one passes."""
    validate_answer(OcppVersion.V16, "1", "CancelReservation", {"status": "Accepted"})
    with pytest.raises(exceptions.FormatViolationError):
        validate_answer(OcppVersion.V16, "1", "CancelReservation", {"status": "Maybe"})


async def test_inline_validation_switch_keeps_validation_off_the_executor(monkeypatch):
    """ASYNC_VALIDATION exists, and once off, the library's validate_payload does not use the executor."""
    assert isinstance(ocpp.messages.ASYNC_VALIDATION, bool)
    monkeypatch.setattr(ocpp.messages, "ASYNC_VALIDATION", True)
    use_inline_validation()
    assert ocpp.messages.ASYNC_VALIDATION is False

    def no_executor(*args: Any) -> Any:
        raise AssertionError("validation went to the executor")

    monkeypatch.setattr(asyncio.get_running_loop(), "run_in_executor", no_executor)
    await ocpp.messages.validate_payload(Call("1", "Heartbeat", {}), "1.6")


# -- actions and schema files -----------------------------------------------------------


def test_library_version_names():
    """The library names the versions "1.6" and "2.0.1"."""
    assert LIBRARY_VERSIONS == {OcppVersion.V16: "1.6", OcppVersion.V201: "2.0.1"}


def test_action_enums_list_each_version_s_actions():
    """The Action enums tell an action of the version (NotSupported) from an unknown name (NotImplemented)."""
    assert is_known_action(OcppVersion.V16, "ReserveNow")
    assert is_known_action(OcppVersion.V16, "StartTransaction")
    assert not is_known_action(OcppVersion.V16, "TransactionEvent")
    assert is_known_action(OcppVersion.V201, "ReservationStatusUpdate")
    assert not is_known_action(OcppVersion.V201, "StartTransaction")
    assert not is_known_action(OcppVersion.V201, "NoSuchAction")


@pytest.mark.parametrize(
    ("version", "action", "path"),
    [
        (OcppVersion.V16, "MeterValues", "v16/schemas/MeterValues.json"),
        (OcppVersion.V16, "StatusNotification", "v16/schemas/StatusNotification.json"),
        (OcppVersion.V201, "MeterValues", "v201/schemas/MeterValuesRequest.json"),
        (OcppVersion.V201, "StatusNotification", "v201/schemas/StatusNotificationRequest.json"),
    ],
)
def test_request_schemas_are_where_the_library_keeps_them(version, action, path):
    """The request schema files the direct path compiles are the library's package data, at these paths."""
    assert schema_path(version, action) == Path(ocpp.__file__).parent / path
    assert schema_path(version, action).is_file()
