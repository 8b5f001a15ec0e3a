"""The OCPP-J session with one charger: the one module that touches the untyped ``ocpp`` library.

Incoming CALLs are routed by the library's ``@on`` handlers. Everything around them
is the gateway's own, because the library's defaults are wrong for a CSMS holding
thousands of chargers (see ``/work/shared/ocpp-facts.md``):

* Frames are parsed here, so that malformed ones get the CALLERROR their version
  prescribes (1.6 ``FormationViolation``, 2.0.1 ``RpcFrameworkError`` /
  ``MessageTypeNotSupported``) instead of silence, and unknown actions get OCPP-J's
  ``NotImplemented`` (unknown name) / ``NotSupported`` (known, not handled).
* Outgoing CALLs wait on a per-call future rather than the library's shared queue:
  a closed socket fails them at once instead of after the full timeout, a late
  answer cannot be mistaken for the next call's, and the timeout is per call.
* The frames that make up most of a charger's traffic (Heartbeat, MeterValues,
  StatusNotification) are answered without the library's per-call introspection,
  key conversion and dataclass round trips, validated against the library's own
  schemas by compiled validators (``ocpp_schemas``). Their answers are constants,
  checked against the answer schemas by the unit tests instead of on every frame.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, cast

import ocpp.messages
from ocpp.charge_point import ChargePoint
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallResult
from ocpp.routing import on as _on
from ocpp.v16 import call_result as v16_result
from ocpp.v16.enums import Action as V16Action
from ocpp.v201 import call_result as v201_result
from ocpp.v201.enums import Action as V201Action
from websockets.exceptions import ConnectionClosed

from evreserve.models import OcppVersion, ReservationState, utcnow
from evreserve.ocpp_mapping import ocpp_datetime

from . import charger_messages as msgs
from .charger_messages import ChargerEvents
from .ocpp_schemas import SchemaViolation, request_validator, violation_code

F = TypeVar("F", bound=Callable[..., Any])

#: Incoming CALLs whose answer waits on storage; they run off the reading task so
#: that answers to the gateway's own CALLs are never stuck behind them.
SLOW_ACTIONS = frozenset({"Authorize"})
#: A charger has at most one CALL outstanding (OCPP-J); anything beyond this is abuse.
MAX_QUEUED_CALLS = 16
#: OCPP-J: the messageId to use when the frame's own cannot be read.
UNKNOWN_MESSAGE_ID = "-1"
#: Timed-out CALLs whose late answers are still acted on (one outstanding CALL per
#: charger, so only the last few can ever be answered).
MAX_LATE_CALLS = 4
#: WebSocket close code for a charger that keeps flooding past its budget.
POLICY_VIOLATION = 1008


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


current_time = CurrentTime()


#: The answer of the directly answered CALLs whose confirmation has no fields.
EMPTY_ANSWER = "{}"

#: A directly answered CALL: (session, validated camelCase payload) -> the answer's JSON.
DirectHandler = Callable[[Any, dict[str, Any]], str]


def answer_empty(_session: Any, _payload: dict[str, Any]) -> str:
    """MeterValues: the service keeps no meter data, and the answer has no fields."""
    return EMPTY_ANSWER


def use_inline_validation() -> None:
    """Validate payloads on the event loop: microseconds per frame, cheaper than a thread hop."""
    ocpp.messages.ASYNC_VALIDATION = False


def on(action: str) -> Callable[[F], F]:
    """The library's ``@on``, typed."""
    return cast(Callable[[F], F], _on(action))


# -- errors -------------------------------------------------------------------------


class SessionClosed(Exception):
    """The charger's socket closed before it answered."""


@dataclass(frozen=True, slots=True)
class CallErrorReply:
    """A CALLERROR: the charger's, or the gateway's verdict on an invalid answer."""

    code: str
    description: str


@dataclass(frozen=True, slots=True)
class CallResultReply:
    payload: dict[str, Any]


Reply = CallResultReply | CallErrorReply


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


def _frame_error_code(version: OcppVersion) -> str:
    return "FormationViolation" if version is OcppVersion.V16 else "RpcFrameworkError"


_KNOWN_ACTIONS = {
    OcppVersion.V16: frozenset(a.value for a in V16Action),
    OcppVersion.V201: frozenset(a.value for a in V201Action),
}


class _BoundRoutes:
    """The library's ``route_map``, built per class instead of per connection (memory)."""

    __slots__ = ("_owner",)

    def __init__(self, owner: OcppSession) -> None:
        self._owner = owner

    def __contains__(self, action: object) -> bool:
        return action in self._owner._routes

    def __getitem__(self, action: str) -> dict[str, Any]:
        function, skip = self._owner._routes[action]
        return {"_on_action": function.__get__(self._owner), "_skip_schema_validation": skip}


class OcppSession(ChargePoint):  # type: ignore[misc]
    """One charger's OCPP-J session over a websockets connection."""

    version: OcppVersion
    _ocpp_version: str
    _routes: dict[str, tuple[Callable[..., Any], bool]]
    #: CALLs answered without the library (see the module docstring), by action.
    _direct: ClassVar[dict[str, DirectHandler]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        routes: dict[str, tuple[Callable[..., Any], bool]] = {}
        for klass in reversed(cls.__mro__):
            for attribute in vars(klass).values():
                action = getattr(attribute, "_on_action", None)
                if action is not None:
                    routes[str(action)] = (attribute, bool(getattr(attribute, "_skip_schema_validation", False)))
        cls._routes = routes

    def __init__(
        self,
        identity: str,
        connection: Any,
        events: ChargerEvents,
        logger: logging.LoggerAdapter[Any],
        heartbeat_s: int = 300,
        frames_per_s: float = 0.0,
        frame_burst: int = 200,
    ) -> None:
        # The base __init__ is skipped on purpose: it builds a route map, a queue and a
        # lock per connection, none of which this class uses.
        self.id = identity
        self._connection = connection
        self.logger = logger
        self.events = events
        self.heartbeat_s = heartbeat_s
        # Made on the first outgoing CALL: most connections never get one.
        self._call_lock: asyncio.Lock | None = None
        self._pending: dict[str, asyncio.Future[Reply]] = {}
        #: CALLs whose caller stopped waiting, with what to do if the answer still comes.
        #: A plain dict (insertion-ordered): an OrderedDict costs twice the memory, per socket.
        self._late: dict[str, Callable[[Reply], None]] = {}
        self._inbox: deque[Call] | None = None
        self._inbox_task: asyncio.Task[None] | None = None
        self._closed = False
        self._budget = FrameBudget(frames_per_s, frame_burst) if frames_per_s > 0 else None
        self._frame_burst = frame_burst
        #: Frames refused in a row; a charger that does not slow down is disconnected.
        self._refused = 0
        self._closer: asyncio.Task[None] | None = None

    @property
    def route_map(self) -> _BoundRoutes:
        """What the library's call handling looks routes up in; made when it is needed."""
        return _BoundRoutes(self)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- incoming frames ------------------------------------------------------------

    async def route_message(self, raw: str | bytes) -> None:
        try:
            # _route decides synchronously and hands back what is left to await (usually
            # the answer's send): one coroutine per frame, not three.
            pending = self._route(raw)
            if pending is not None:
                await pending
        except ConnectionClosed:
            raise
        except Exception:
            # A bug in one frame's handling must not take the charger's connection down.
            self.logger.exception("failed to handle a frame")

    def _route(self, raw: str | bytes) -> Awaitable[None] | None:
        unreadable: str | None = None
        try:
            frame = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            frame, unreadable = None, "frame is not valid JSON"
        except RecursionError:
            # Nesting deeper than the decoder's recursion limit: a hostile frame, not a
            # bug of ours. It still gets the answer of an unreadable frame.
            frame, unreadable = None, "frame is nested too deeply"
        if self._budget is not None and not self._answers_pending(frame):
            if not self._budget.take():
                return self._over_budget(frame)
            self._refused = 0
        if unreadable is not None:
            return self._send_error(UNKNOWN_MESSAGE_ID, _frame_error_code(self.version), unreadable)
        if not isinstance(frame, list) or not frame or not isinstance(frame[0], int):
            message_id = frame[1] if isinstance(frame, list) and len(frame) > 1 and isinstance(frame[1], str) else None
            return self._send_error(
                message_id or UNKNOWN_MESSAGE_ID, _frame_error_code(self.version), "frame is not an OCPP-J message"
            )
        kind = frame[0]
        if kind == 2:
            return self._route_call(frame)
        if kind in (3, 4):
            self._route_reply(frame)
            return None
        if self.version is OcppVersion.V201:
            message_id = frame[1] if len(frame) > 1 and isinstance(frame[1], str) else UNKNOWN_MESSAGE_ID
            return self._send_error(message_id, "MessageTypeNotSupported", f"unknown messageTypeId {kind}")
        # OCPP-J 1.6: a message with an unknown type is ignored.
        self.logger.warning("ignored a frame of unknown messageTypeId", extra={"messageTypeId": kind})
        return None

    def _answers_pending(self, frame: Any) -> bool:
        """An answer to one of our CALLs: never rate-limited (we bound those ourselves)."""
        return (
            isinstance(frame, list)
            and len(frame) > 1
            and frame[0] in (3, 4)
            and isinstance(frame[1], str)
            and (frame[1] in self._pending or frame[1] in self._late)
        )

    async def _over_budget(self, frame: Any) -> None:
        """A frame over the charger's budget: CALLs get GenericError, the rest is dropped.

        OCPP-J has no "slow down" code, and a CALL must be answered, so GenericError it
        is. A charger that keeps sending regardless (a burst's worth of refusals in a
        row) is disconnected with 1008; only its own connection is affected.
        """
        self._refused += 1
        if self._refused == 1:
            self.logger.warning("charger over its frame budget; refusing frames")
        if self._refused > self._frame_burst:
            if self._closer is None:
                self.logger.warning("charger kept flooding; closing its connection", extra={"refused": self._refused})
                # Not awaited here: the closing handshake needs the reading loop (this
                # caller) to keep draining frames, or it waits out the close timeout.
                self._closer = asyncio.get_running_loop().create_task(
                    self._connection.close(POLICY_VIOLATION, "rate limit exceeded")
                )
            return
        if isinstance(frame, list) and len(frame) > 1 and frame[0] == 2 and isinstance(frame[1], str) and frame[1]:
            await self._connection.send(
                json.dumps([4, frame[1], "GenericError", "rate limit exceeded; slow down", {}], separators=(",", ":"))
            )

    def _route_call(self, frame: list[Any]) -> Awaitable[None] | None:
        message_id = frame[1] if len(frame) > 1 and isinstance(frame[1], str) else None
        if message_id is None or len(frame) != 4 or not isinstance(frame[2], str) or not isinstance(frame[3], dict):
            return self._send_error(
                message_id or UNKNOWN_MESSAGE_ID, _frame_error_code(self.version), "CALL is not [2, id, action, {}]"
            )
        action: str = frame[2]
        payload: dict[str, Any] = frame[3]
        if action == "Heartbeat" and not payload and self._inbox is None:
            return self._connection.send(  # type: ignore[no-any-return]
                f'[3,{json.dumps(message_id)},{{"currentTime":"{current_time()}"}}]'
            )
        call = Call(message_id, action, payload)
        if self._inbox is None and action not in SLOW_ACTIONS:
            return self._answer(call)
        if self._inbox is None:
            self._inbox = deque([call])
            self._inbox_task = asyncio.get_running_loop().create_task(self._drain_inbox())
            return None
        if len(self._inbox) < MAX_QUEUED_CALLS:
            # Queued behind the slow one so that the charger's CALLs are answered in order.
            self._inbox.append(call)
            return None
        return self._send_error(message_id, "GenericError", "too many CALLs outstanding")

    async def _answer_directly(
        self, message_id: str, action: str, payload: dict[str, Any], handler: DirectHandler
    ) -> None:
        try:
            request_validator(self.version, action)(payload)
        except SchemaViolation as violation:
            await self._send_error(
                message_id, error_code_for(self.version, violation_code(violation)), violation.message
            )
            return
        except RecursionError:
            await self._send_error(message_id, _frame_error_code(self.version), "payload is nested too deeply")
            return
        answer = handler(self, payload)
        await self._connection.send(f"[3,{json.dumps(message_id)},{answer}]")

    async def _drain_inbox(self) -> None:
        try:
            while self._inbox:
                await self._answer(self._inbox[0])
                self._inbox.popleft()
        except ConnectionClosed:
            pass
        except Exception:
            self.logger.exception("failed to answer a CALL")
        finally:
            self._inbox = None
            self._inbox_task = None

    def _answer(self, call: Call) -> Awaitable[None]:
        """The answer to one CALL: the direct path for the frequent ones, else the library."""
        direct = self._direct.get(call.action)
        if direct is not None:
            return self._answer_directly(call.unique_id, call.action, call.payload, direct)
        return self._answer_by_library(call)

    async def _answer_by_library(self, call: Call) -> None:
        if call.action not in self.route_map:
            # OCPP-J: NotImplemented = action unknown; NotSupported = known but not
            # supported (the library has these the other way round).
            known = call.action in _KNOWN_ACTIONS[self.version]
            code = "NotSupported" if known else "NotImplemented"
            await self._send_error(call.unique_id, code, f"{call.action} is not handled by this CSMS")
            return
        try:
            await self._handle_call(call)
        except OCPPError as error:
            await self._send_error(call.unique_id, error_code_for(self.version, error.code), error.description)
        except RecursionError:
            # The library's validation and key conversion recurse over the payload.
            await self._send_error(call.unique_id, _frame_error_code(self.version), "payload is nested too deeply")
        except ConnectionClosed:
            raise
        except Exception:
            # OCPP-J: every CALL gets an answer, so the charger does not wait out its timeout.
            self.logger.exception("failed to answer a CALL", extra={"action": call.action})
            await self._send_error(call.unique_id, "InternalError", "the CSMS failed to handle this CALL")

    async def _send_error(self, message_id: str, code: str, description: str) -> None:
        self.logger.warning("answered with a CALLERROR", extra={"errorCode": code, "description": description})
        await self._connection.send(json.dumps([4, message_id, code, description, {}], separators=(",", ":")))

    def _route_reply(self, frame: list[Any]) -> None:
        message_id = frame[1] if len(frame) > 1 and isinstance(frame[1], str) else None
        future = self._pending.pop(message_id, None) if message_id is not None else None
        if future is None or future.done():
            late = self._late.pop(message_id, None) if message_id is not None else None
            if late is not None:
                self.logger.info("the charger answered after the deadline", extra={"messageId": message_id})
                late(self._reply_of(frame))
                return
            # OCPP-J: an answer to no CALL of ours is ignored; the connection stays.
            self.logger.warning("ignored an answer to no pending CALL", extra={"messageId": message_id})
            return
        future.set_result(self._reply_of(frame))

    def _reply_of(self, frame: list[Any]) -> Reply:
        if frame[0] == 3:
            payload = frame[2] if len(frame) > 2 else None
            if not isinstance(payload, dict):
                return CallErrorReply(_frame_error_code(self.version), "CALLRESULT without a payload")
            return CallResultReply(payload)
        code = frame[2] if len(frame) > 2 and isinstance(frame[2], str) else "GenericError"
        description = frame[3] if len(frame) > 3 and isinstance(frame[3], str) else ""
        return CallErrorReply(code, description)

    # -- outgoing CALLs -------------------------------------------------------------

    async def send_call(
        self, action: str, payload: dict[str, Any], on_late: Callable[[Reply], None] | None = None
    ) -> Reply:
        """Send one CALL (camelCase payload) and return the charger's answer.

        Serialized per charger (one outstanding CALL, OCPP-J). Raises
        ``SessionClosed`` if the socket closes first; the caller bounds the wait
        (``asyncio.timeout``), which also covers the wait for the previous CALL.
        A request or an answer that breaks the schema comes back as a
        ``CallErrorReply`` with the violation's code.

        ``on_late`` gets the charger's answer if it comes after the caller stopped
        waiting (a timeout does not mean the charger did not act on the CALL).
        """
        if self._closed:
            raise SessionClosed
        message_id = str(uuid.uuid4())
        call = Call(message_id, action, payload)
        try:
            ocpp.messages._validate_payload(call, self._ocpp_version)
        except OCPPError as error:
            return CallErrorReply(error.code, f"refused to send an invalid {action}: {error.description}")
        if self._call_lock is None:
            self._call_lock = asyncio.Lock()
        async with self._call_lock:
            if self._closed:
                raise SessionClosed
            future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
            self._pending[message_id] = future
            sent = False
            try:
                try:
                    await self._connection.send(call.to_json())
                except ConnectionClosed as exc:
                    raise SessionClosed from exc
                sent = True
                reply = await future
            except asyncio.CancelledError:
                if sent and on_late is not None and not self._closed:
                    self._late[message_id] = on_late
                    while len(self._late) > MAX_LATE_CALLS:
                        del self._late[next(iter(self._late))]
                raise
            finally:
                self._pending.pop(message_id, None)
        if isinstance(reply, CallResultReply):
            try:
                ocpp.messages._validate_payload(CallResult(message_id, reply.payload, action), self._ocpp_version)
            except OCPPError as error:
                return CallErrorReply(error.code, f"invalid {action} answer: {error.description}")
        return reply

    def close(self) -> None:
        """Fail every outstanding CALL at once: the charger can no longer answer it."""
        self._closed = True
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(SessionClosed())


class V16Session(OcppSession):
    version = OcppVersion.V16
    _ocpp_version = "1.6"

    @on("BootNotification")
    def on_boot_notification(self, **kwargs: Any) -> Any:
        now = utcnow()
        self.events.record_boot(msgs.boot_info_v16(kwargs, now))
        return v16_result.BootNotification(
            current_time=ocpp_datetime(now), interval=self.heartbeat_s, status="Accepted"
        )

    @on("Heartbeat")
    def on_heartbeat(self, **kwargs: Any) -> Any:
        return v16_result.Heartbeat(current_time=current_time())

    def _status_notification(self, payload: dict[str, Any]) -> str:
        self.events.record_port_status(*msgs.port_status_v16(payload, utcnow()))
        return EMPTY_ANSWER

    @on("Authorize")
    async def on_authorize(self, id_tag: str, **kwargs: Any) -> Any:
        info: dict[str, Any] = {"status": "Accepted"}
        group = await self.events.group_token_for(id_tag)
        if group is not None:
            info["parent_id_tag"] = group.id_token
        return v16_result.Authorize(id_tag_info=info)

    @on("StartTransaction")
    def on_start_transaction(self, reservation_id: int | None = None, **kwargs: Any) -> Any:
        if reservation_id is not None:
            self.events.record_reservation_end(reservation_id, ReservationState.USED)
        return v16_result.StartTransaction(
            transaction_id=self.events.new_transaction_id(), id_tag_info={"status": "Accepted"}
        )

    @on("StopTransaction")
    def on_stop_transaction(self, id_tag: str | None = None, **kwargs: Any) -> Any:
        return v16_result.StopTransaction(id_tag_info={"status": "Accepted"} if id_tag is not None else None)

    _direct: ClassVar[dict[str, DirectHandler]] = {
        "MeterValues": answer_empty,
        "StatusNotification": _status_notification,
    }

    @on("DataTransfer")
    def on_data_transfer(self, **kwargs: Any) -> Any:
        return v16_result.DataTransfer(status="UnknownVendorId")

    @on("DiagnosticsStatusNotification")
    def on_diagnostics_status_notification(self, **kwargs: Any) -> Any:
        return v16_result.DiagnosticsStatusNotification()

    @on("FirmwareStatusNotification")
    def on_firmware_status_notification(self, **kwargs: Any) -> Any:
        return v16_result.FirmwareStatusNotification()

    @on("SecurityEventNotification")
    def on_security_event_notification(self, **kwargs: Any) -> Any:
        self.logger.info("security event", extra={"event": kwargs.get("type"), "info": kwargs.get("tech_info")})
        return v16_result.SecurityEventNotification()

    @on("SignedFirmwareStatusNotification")
    def on_signed_firmware_status_notification(self, **kwargs: Any) -> Any:
        return v16_result.SignedFirmwareStatusNotification()

    @on("LogStatusNotification")
    def on_log_status_notification(self, **kwargs: Any) -> Any:
        return v16_result.LogStatusNotification()


class V201Session(OcppSession):
    version = OcppVersion.V201
    _ocpp_version = "2.0.1"

    @on("BootNotification")
    def on_boot_notification(self, charging_station: dict[str, Any], **kwargs: Any) -> Any:
        now = utcnow()
        self.events.record_boot(msgs.boot_info_v201(charging_station, now))
        return v201_result.BootNotification(
            current_time=ocpp_datetime(now), interval=self.heartbeat_s, status="Accepted"
        )

    @on("Heartbeat")
    def on_heartbeat(self, **kwargs: Any) -> Any:
        return v201_result.Heartbeat(current_time=current_time())

    def _status_notification(self, payload: dict[str, Any]) -> str:
        self.events.record_port_status(*msgs.port_status_v201(payload, utcnow()))
        return EMPTY_ANSWER

    @on("Authorize")
    async def on_authorize(self, id_token: dict[str, Any], **kwargs: Any) -> Any:
        info: dict[str, Any] = {"status": "Accepted"}
        group = await self.events.group_token_for(str(id_token.get("id_token", "")))
        if group is not None:
            info["group_id_token"] = {"id_token": group.id_token, "type": group.type}
        return v201_result.Authorize(id_token_info=info)

    @on("TransactionEvent")
    def on_transaction_event(
        self, reservation_id: int | None = None, id_token: dict[str, Any] | None = None, **kwargs: Any
    ) -> Any:
        if reservation_id is not None:
            self.events.record_reservation_end(reservation_id, ReservationState.USED)
        return v201_result.TransactionEvent(id_token_info={"status": "Accepted"} if id_token is not None else None)

    @on("ReservationStatusUpdate")
    def on_reservation_status_update(self, reservation_id: int, reservation_update_status: str, **kwargs: Any) -> Any:
        state = msgs.RESERVATION_UPDATE_STATES.get(reservation_update_status)
        if state is not None:
            self.events.record_reservation_end(reservation_id, state)
        return v201_result.ReservationStatusUpdate()

    _direct: ClassVar[dict[str, DirectHandler]] = {
        "MeterValues": answer_empty,
        "StatusNotification": _status_notification,
    }

    @on("DataTransfer")
    def on_data_transfer(self, **kwargs: Any) -> Any:
        return v201_result.DataTransfer(status="UnknownVendorId")

    @on("SecurityEventNotification")
    def on_security_event_notification(self, **kwargs: Any) -> Any:
        self.logger.info("security event", extra={"event": kwargs.get("type"), "info": kwargs.get("tech_info")})
        return v201_result.SecurityEventNotification()

    @on("FirmwareStatusNotification")
    def on_firmware_status_notification(self, **kwargs: Any) -> Any:
        return v201_result.FirmwareStatusNotification()

    @on("NotifyEvent")
    def on_notify_event(self, **kwargs: Any) -> Any:
        return v201_result.NotifyEvent()

    @on("NotifyReport")
    def on_notify_report(self, **kwargs: Any) -> Any:
        return v201_result.NotifyReport()

    @on("LogStatusNotification")
    def on_log_status_notification(self, **kwargs: Any) -> Any:
        return v201_result.LogStatusNotification()

    @on("NotifyMonitoringReport")
    def on_notify_monitoring_report(self, **kwargs: Any) -> Any:
        return v201_result.NotifyMonitoringReport()

    @on("NotifyCustomerInformation")
    def on_notify_customer_information(self, **kwargs: Any) -> Any:
        return v201_result.NotifyCustomerInformation()

    @on("NotifyDisplayMessages")
    def on_notify_display_messages(self, **kwargs: Any) -> Any:
        return v201_result.NotifyDisplayMessages()

    @on("NotifyChargingLimit")
    def on_notify_charging_limit(self, **kwargs: Any) -> Any:
        return v201_result.NotifyChargingLimit()

    @on("ClearedChargingLimit")
    def on_cleared_charging_limit(self, **kwargs: Any) -> Any:
        return v201_result.ClearedChargingLimit()

    @on("ReportChargingProfiles")
    def on_report_charging_profiles(self, **kwargs: Any) -> Any:
        return v201_result.ReportChargingProfiles()

    @on("PublishFirmwareStatusNotification")
    def on_publish_firmware_status_notification(self, **kwargs: Any) -> Any:
        return v201_result.PublishFirmwareStatusNotification()


SESSION_CLASSES: dict[OcppVersion, type[OcppSession]] = {OcppVersion.V16: V16Session, OcppVersion.V201: V201Session}


def new_session(
    version: OcppVersion,
    identity: str,
    connection: Any,
    events: ChargerEvents,
    logger: logging.LoggerAdapter[Any],
    heartbeat_s: int = 300,
    frames_per_s: float = 0.0,
    frame_burst: int = 200,
) -> OcppSession:
    return SESSION_CLASSES[version](identity, connection, events, logger, heartbeat_s, frames_per_s, frame_burst)


__all__ = [
    "CallErrorReply",
    "CallResultReply",
    "OcppSession",
    "Reply",
    "SessionClosed",
    "error_code_for",
    "new_session",
    "use_inline_validation",
]
