"""OCPP-J framing: the home of what a frame says and what answer it is owed, without I/O.

Sans-I/O, like websockets' protocol layer: text in, a parsed frame (or the CALLERROR it
gets) out, and CALLRESULT/CALLERROR text to send. No sockets, no asyncio, no ``ocpp``.

* A frame is a ``Call``, an ``Answer`` (CALLRESULT or CALLERROR, to one of the CSMS's
  CALLs), an ``Invalid`` frame with the CALLERROR to give, or a frame to ignore.
* Malformed frames get the CALLERROR their version prescribes (1.6 ``FormationViolation``,
  2.0.1 ``RpcFrameworkError`` / ``MessageTypeNotSupported``) instead of the library's
  silence; ``error_code_for`` spells a code the way the charger's version does.
* ``FrameBudget`` (a charger's frame rate) and ``CurrentTime`` (the cached ``currentTime``
  of Heartbeat answers) are the pure state a session keeps per frame.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from evreserve.models import OcppVersion, utcnow
from evreserve.ocpp_mapping import ocpp_datetime

#: OCPP-J: the messageId to use when the frame's own cannot be read.
UNKNOWN_MESSAGE_ID = "-1"

# -- what a frame can be ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallErrorReply:
    """A CALLERROR: the charger's, or the gateway's verdict on an invalid answer."""

    code: str
    description: str
    #: The CALLERROR's errorDetails, for the message log; not part of what the reply means.
    details: Any = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class CallResultReply:
    payload: dict[str, Any]


Reply = CallResultReply | CallErrorReply

# The frames are made once per frame received, so they are plain slotted dataclasses:
# a frozen one's __init__ (object.__setattr__ per field) costs three times as much.


@dataclass(slots=True)
class Call:
    """A well-formed CALL: ``[2, messageId, action, {payload}]`` (payload camelCase)."""

    message_id: str
    action: str
    payload: dict[str, Any]
    #: The frame's own text and when it came (ms since the epoch), set when it is to be logged.
    raw: str | bytes = ""
    at_ms: int = 0


@dataclass(slots=True)
class Answer:
    """A CALLRESULT or CALLERROR: the charger's answer to a CALL, if ``message_id`` is one of ours."""

    message_id: str | None
    reply: Reply


@dataclass(slots=True)
class Invalid:
    """A frame that is not handled but answered, with this CALLERROR."""

    message_id: str
    code: str
    description: str


@dataclass(slots=True)
class Ignored:
    """OCPP-J 1.6: a message with an unknown messageTypeId is ignored."""

    message_type_id: int


Frame = Call | Answer | Invalid | Ignored


@dataclass(slots=True)
class Unreadable:
    """What ``decode`` gives for text that is no JSON value (a JSON value is never this)."""

    description: str


# -- CALLERROR codes --------------------------------------------------------------------

_V16_SPELLING = {
    "FormatViolation": "FormationViolation",
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
}
_V201_SPELLING = {"FormationViolation": "FormatViolation"}


def error_code_for(version: OcppVersion, code: str) -> str:
    """The spelling of a CALLERROR code in ``version`` (the library uses 2.0.1's everywhere)."""
    if version is OcppVersion.V16:
        return _V16_SPELLING.get(code, code)
    return _V201_SPELLING.get(code, code)


def frame_error_code(version: OcppVersion) -> str:
    """The code of a frame (or payload) that cannot be read as an OCPP-J message."""
    return "FormationViolation" if version is OcppVersion.V16 else "RpcFrameworkError"


# -- parsing ----------------------------------------------------------------------------


def decode(raw: str | bytes) -> Any:
    """The frame's JSON value, or ``Unreadable`` with the reason."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return Unreadable("frame is not valid JSON")
    except RecursionError:
        # Nesting deeper than the decoder's recursion limit: a hostile frame, not a
        # bug of ours. It still gets the answer of an unreadable frame.
        return Unreadable("frame is nested too deeply")


def answered_id(value: Any) -> str | None:
    """The messageId of a decoded frame that looks like an answer (CALLRESULT/CALLERROR).

    Looser than ``classify`` on purpose: it decides whether a frame is exempt from the
    frame budget, before the frame is judged.
    """
    if isinstance(value, list) and len(value) > 1 and value[0] in (3, 4) and isinstance(value[1], str):
        return value[1]
    return None


def refusable_call_id(value: Any) -> str | None:
    """The messageId to refuse a decoded frame that looks like a CALL with, if it has one."""
    if isinstance(value, list) and len(value) > 1 and value[0] == 2 and isinstance(value[1], str) and value[1]:
        return value[1]
    return None


def classify(value: Any, version: OcppVersion) -> Frame:
    """What a decoded frame is, for a charger speaking ``version``."""
    if isinstance(value, Unreadable):
        return Invalid(UNKNOWN_MESSAGE_ID, frame_error_code(version), value.description)
    if not isinstance(value, list) or not value or not isinstance(value[0], int):
        message_id = value[1] if isinstance(value, list) and len(value) > 1 and isinstance(value[1], str) else None
        return Invalid(message_id or UNKNOWN_MESSAGE_ID, frame_error_code(version), "frame is not an OCPP-J message")
    kind = value[0]
    if kind == 2:
        message_id = value[1] if len(value) > 1 and isinstance(value[1], str) else None
        if message_id is None or len(value) != 4 or not isinstance(value[2], str) or not isinstance(value[3], dict):
            return Invalid(
                message_id or UNKNOWN_MESSAGE_ID, frame_error_code(version), "CALL is not [2, id, action, {}]"
            )
        return Call(message_id, value[2], value[3])
    if kind in (3, 4):
        return Answer(value[1] if len(value) > 1 and isinstance(value[1], str) else None, _reply(value, version))
    if version is OcppVersion.V201:
        message_id = value[1] if len(value) > 1 and isinstance(value[1], str) else UNKNOWN_MESSAGE_ID
        return Invalid(message_id, "MessageTypeNotSupported", f"unknown messageTypeId {kind}")
    return Ignored(kind)


def parse(raw: str | bytes, version: OcppVersion) -> Frame:
    """``classify(decode(raw))``: what a frame's text is."""
    return classify(decode(raw), version)


def _reply(frame: list[Any], version: OcppVersion) -> Reply:
    if frame[0] == 3:
        payload = frame[2] if len(frame) > 2 else None
        if not isinstance(payload, dict):
            return CallErrorReply(frame_error_code(version), "CALLRESULT without a payload")
        return CallResultReply(payload)
    code = frame[2] if len(frame) > 2 and isinstance(frame[2], str) else "GenericError"
    description = frame[3] if len(frame) > 3 and isinstance(frame[3], str) else ""
    details = frame[4] if len(frame) > 4 and isinstance(frame[4], dict) else {}
    return CallErrorReply(code, description, details)


# -- serialising ------------------------------------------------------------------------


def call_result(message_id: str, payload_json: str) -> str:
    """A CALLRESULT frame around an answer payload that is JSON already."""
    return f"[3,{json.dumps(message_id)},{payload_json}]"


def heartbeat_result(message_id: str, current_time: str) -> str:
    """The CALLRESULT of a Heartbeat, formatted in one step (the most frequent frame)."""
    return f'[3,{json.dumps(message_id)},{{"currentTime":"{current_time}"}}]'


def answer_frame(message_id: str, reply: Reply) -> str:
    """The frame of a charger's answer, as the message log keeps it."""
    if isinstance(reply, CallResultReply):
        return json.dumps([3, message_id, reply.payload], separators=(",", ":"), default=str)
    details = reply.details if reply.details is not None else {}
    return json.dumps([4, message_id, reply.code, reply.description, details], separators=(",", ":"), default=str)


def call_error(message_id: str, code: str, description: str) -> str:
    """A CALLERROR frame, without details."""
    return json.dumps([4, message_id, code, description, {}], separators=(",", ":"))


# -- per-frame state --------------------------------------------------------------------


class FrameBudget:
    """A token bucket: ``rate`` frames a second on average, ``burst`` at once."""

    __slots__ = ("_burst", "_clock", "_rate", "_tokens", "_updated")

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class CurrentTime:
    """OCPP's ``currentTime``, formatted once per 100 ms rather than once per Heartbeat.

    Formatting a datetime was 10% of a Heartbeat's CPU; chargers set their clocks
    from it, and 100 ms is well inside what a charger's clock keeps to.
    """

    __slots__ = ("_clock", "_text", "_tick")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._tick = -1
        self._text = ""

    def __call__(self) -> str:
        tick = int(self._clock() * 10)
        if tick != self._tick:
            self._tick = tick
            self._text = ocpp_datetime(utcnow())
        return self._text


#: The one ``currentTime`` cache of the process, shared by every session.
current_time = CurrentTime()
