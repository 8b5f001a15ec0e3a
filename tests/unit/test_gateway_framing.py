"""OCPP-J framing without I/O: frame text in, the parsed frame or the CALLERROR it gets out."""

from __future__ import annotations

import json

import pytest

from evreserve.models import OcppVersion
from evreserve_gateway.protocol.framing import (
    UNKNOWN_MESSAGE_ID,
    Answer,
    Call,
    CallErrorReply,
    CallResultReply,
    CurrentTime,
    Ignored,
    Invalid,
    Unreadable,
    answered_id,
    call_error,
    call_result,
    decode,
    error_code_for,
    frame_error_code,
    heartbeat_result,
    parse,
    refusable_call_id,
)

V16, V201 = OcppVersion.V16, OcppVersion.V201
FRAME_CODE = {V16: "FormationViolation", V201: "RpcFrameworkError"}


@pytest.mark.parametrize("version", list(OcppVersion))
def test_a_call_is_parsed_with_its_id_action_and_payload(version):
    """A well-formed CALL becomes a Call, its payload untouched (camelCase)."""
    assert parse('[2,"a","StatusNotification",{"connectorId":1}]', version) == Call(
        "a", "StatusNotification", {"connectorId": 1}
    )


def test_a_frame_in_bytes_is_parsed_like_text():
    """A binary WebSocket message is read as the same frame as its text."""
    assert parse(b'[2,"a","Heartbeat",{}]', V16) == Call("a", "Heartbeat", {})


def test_a_call_with_an_empty_message_id_is_still_a_call():
    """An empty messageId is a string: the CALL is handled (and answered with that id)."""
    assert parse('[2,"","Heartbeat",{}]', V201) == Call("", "Heartbeat", {})


@pytest.mark.parametrize("version", list(OcppVersion))
@pytest.mark.parametrize(
    ("text", "message_id", "description"),
    [
        ("not json", UNKNOWN_MESSAGE_ID, "frame is not valid JSON"),
        (b"[\xc3\x28]", UNKNOWN_MESSAGE_ID, "frame is not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, UNKNOWN_MESSAGE_ID, "frame is nested too deeply"),
        ('{"a":1}', UNKNOWN_MESSAGE_ID, "frame is not an OCPP-J message"),
        ("[]", UNKNOWN_MESSAGE_ID, "frame is not an OCPP-J message"),
        ('"text"', UNKNOWN_MESSAGE_ID, "frame is not an OCPP-J message"),
        ('["2","x","Heartbeat",{}]', "x", "frame is not an OCPP-J message"),
        ('[2.0,"x","Heartbeat",{}]', "x", "frame is not an OCPP-J message"),
        ('[null,""]', UNKNOWN_MESSAGE_ID, "frame is not an OCPP-J message"),
        ('[2,"c","Heartbeat"]', "c", "CALL is not [2, id, action, {}]"),
        ('[2,"c","Heartbeat",[]]', "c", "CALL is not [2, id, action, {}]"),
        ('[2,"c",7,{}]', "c", "CALL is not [2, id, action, {}]"),
        ('[2,"c","Heartbeat",{},{}]', "c", "CALL is not [2, id, action, {}]"),
        ('[2,7,"Heartbeat",{}]', UNKNOWN_MESSAGE_ID, "CALL is not [2, id, action, {}]"),
        ("[2]", UNKNOWN_MESSAGE_ID, "CALL is not [2, id, action, {}]"),
    ],
)
def test_malformed_frames_get_the_version_s_frame_error(version, text, message_id, description):
    """GIVEN a frame that is no OCPP-J CALL WHEN parsed THEN it gets its version's code, with its id if readable."""
    assert parse(text, version) == Invalid(message_id, FRAME_CODE[version], description)


def test_v16_unknown_message_type_is_ignored():
    """OCPP-J 1.6: a frame with an unknown messageTypeId is ignored, not answered."""
    assert parse('[9,"d"]', V16) == Ignored(9)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[9,"d"]', Invalid("d", "MessageTypeNotSupported", "unknown messageTypeId 9")),
        ('[5,""]', Invalid("", "MessageTypeNotSupported", "unknown messageTypeId 5")),
        ("[9]", Invalid(UNKNOWN_MESSAGE_ID, "MessageTypeNotSupported", "unknown messageTypeId 9")),
    ],
)
def test_v201_unknown_message_type_gets_message_type_not_supported(text, expected):
    """OCPP-J 2.0.1: a frame with an unknown messageTypeId gets MessageTypeNotSupported."""
    assert parse(text, V201) == expected


@pytest.mark.parametrize("version", list(OcppVersion))
def test_a_call_result_is_an_answer_with_its_payload(version):
    """A CALLRESULT answers the CALL of its messageId with its payload."""
    assert parse('[3,"id",{"status":"Accepted"}]', version) == Answer("id", CallResultReply({"status": "Accepted"}))


@pytest.mark.parametrize("version", list(OcppVersion))
@pytest.mark.parametrize("text", ['[3,"id"]', '[3,"id",[]]', '[3,"id",null]'])
def test_a_call_result_without_a_payload_answers_with_the_frame_error(version, text):
    """A CALLRESULT without an object payload still answers its CALL, as the version's frame error."""
    assert parse(text, version) == Answer("id", CallErrorReply(FRAME_CODE[version], "CALLRESULT without a payload"))


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ('[4,"id","NotSupported","no reservations",{}]', CallErrorReply("NotSupported", "no reservations")),
        ('[4,"id","RpcFrameworkError","bad",{}]', CallErrorReply("RpcFrameworkError", "bad")),
        ('[4,"id"]', CallErrorReply("GenericError", "")),
        ('[4,"id",5,6]', CallErrorReply("GenericError", "")),
    ],
)
def test_a_call_error_is_an_answer_with_its_code_and_description(text, reply):
    """A CALLERROR answers with its code as sent (GenericError and no description when they are missing)."""
    assert parse(text, V201) == Answer("id", reply)


def test_an_answer_without_a_string_id_answers_nothing():
    """An answer whose messageId is not a string can match no CALL."""
    assert parse('[3,5,{"status":"Accepted"}]', V16) == Answer(None, CallResultReply({"status": "Accepted"}))
    assert parse("[3]", V16) == Answer(None, CallErrorReply("FormationViolation", "CALLRESULT without a payload"))


def test_decode_gives_the_json_value_or_the_reason_it_is_unreadable():
    """decode is the JSON value of a frame, or Unreadable with the description its CALLERROR carries."""
    assert decode('[2,"a","Heartbeat",{}]') == [2, "a", "Heartbeat", {}]
    assert decode("{") == Unreadable("frame is not valid JSON")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[3,"id",{}]', "id"),
        ('[4,"id","GenericError","",{}]', "id"),
        ('[3,"id"]', "id"),
        ('[3.0,"id",{}]', "id"),
        ("[3,5,{}]", None),
        ('[2,"id","Heartbeat",{}]', None),
        ("[3]", None),
        ("not json", None),
    ],
)
def test_answered_id_is_the_id_of_anything_shaped_like_an_answer(text, expected):
    """The frame budget exempts what looks like an answer, judged before the frame is."""
    assert answered_id(decode(text)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[2,"id","Heartbeat",{}]', "id"),
        ('[2,"id","Heartbeat"]', "id"),
        ('[2.0,"id"]', "id"),
        ('[2,"","Heartbeat",{}]', None),
        ('[2,5,"Heartbeat",{}]', None),
        ('[3,"id",{}]', None),
        ("not json", None),
    ],
)
def test_refusable_call_id_is_the_id_a_refused_call_is_answered_with(text, expected):
    """A frame over budget is answered only if it looks like a CALL with a non-empty id."""
    assert refusable_call_id(decode(text)) == expected


def test_error_code_spelling_per_version():
    """The library's 2.0.1 spellings become 1.6's and back; other codes are the same in both."""
    assert error_code_for(V16, "FormatViolation") == "FormationViolation"
    assert error_code_for(V16, "OccurrenceConstraintViolation") == "OccurenceConstraintViolation"
    assert error_code_for(V16, "ProtocolError") == "ProtocolError"
    assert error_code_for(V201, "FormationViolation") == "FormatViolation"
    assert error_code_for(V201, "OccurenceConstraintViolation") == "OccurenceConstraintViolation"


def test_frame_error_code_per_version():
    """An unreadable frame is a FormationViolation in 1.6 and an RpcFrameworkError in 2.0.1."""
    assert (frame_error_code(V16), frame_error_code(V201)) == ("FormationViolation", "RpcFrameworkError")


def test_call_error_is_a_compact_callerror_frame_with_empty_details():
    """A CALLERROR is [4, id, code, description, {}] without spaces."""
    text = call_error("id", "GenericError", 'say "slow"')
    assert text == '[4,"id","GenericError","say \\"slow\\"",{}]'
    assert json.loads(text) == [4, "id", "GenericError", 'say "slow"', {}]


def test_call_result_wraps_a_payload_that_is_json_already():
    """A CALLRESULT carries the answer's JSON as is, and the id escaped."""
    assert call_result('a"b', "{}") == '[3,"a\\"b",{}]'
    assert json.loads(call_result("id", '{"status":"Accepted"}')) == [3, "id", {"status": "Accepted"}]


def test_heartbeat_result_carries_the_current_time():
    """The Heartbeat answer is a CALLRESULT with currentTime."""
    text = heartbeat_result("hb", "2026-11-23T10:00:00.000Z")
    assert json.loads(text) == [3, "hb", {"currentTime": "2026-11-23T10:00:00.000Z"}]


def test_current_time_is_formatted_once_per_tenth_of_a_second():
    """The cached currentTime is reformatted only when the clock moves to the next 100 ms."""
    now = [1000.0]
    current_time = CurrentTime(clock=lambda: now[0])
    first = current_time()
    assert first.endswith("Z")
    now[0] += 0.05
    assert current_time() is first
    now[0] += 0.1
    assert current_time() is not first
