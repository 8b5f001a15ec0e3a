"""The asyncio side of one charger's OCPP-J session: the home of routing frames to answers.

Frames are parsed by ``framing``; incoming CALLs are answered by the version's ``@on``
handlers (``v16``, ``v201``) through the library (``library``), or directly. The rest is
the gateway's own, because the library's defaults are wrong for a CSMS holding
thousands of chargers (see ``/work/shared/ocpp-facts.md``):

* Malformed frames get the CALLERROR ``framing`` gives them, and unknown actions get
  OCPP-J's ``NotImplemented`` (unknown name) / ``NotSupported`` (known, not handled).
* Outgoing CALLs wait on a per-call future rather than the library's shared queue:
  a closed socket fails them at once instead of after the full timeout, a late
  answer cannot be mistaken for the next call's, and the timeout is per call.
* The frames that make up most of a charger's traffic (Heartbeat, MeterValues,
  StatusNotification) are answered without the library's per-call introspection,
  key conversion and dataclass round trips, validated against the library's own
  schemas by compiled validators (``schemas``). Their answers are constants,
  checked against the answer schemas by the unit tests instead of on every frame.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, Protocol

from ..charger_messages import ChargerEvents
from ..charger_socket import CONNECTION_CLOSED
from .framing import (
    Answer,
    Call,
    CallErrorReply,
    CallResultReply,
    FrameBudget,
    Invalid,
    Reply,
    answer_frame,
    answered_id,
    call_error,
    call_result,
    classify,
    current_time,
    decode,
    error_code_for,
    frame_error_code,
    heartbeat_result,
    refusable_call_id,
)
from .library import LibraryHandlers, OCPPError, is_known_action
from .schemas import SchemaViolation, outgoing_call, request_validator, validate_answer, violation_code

#: Incoming CALLs whose answer waits on storage; they run off the reading task so
#: that answers to the gateway's own CALLs are never stuck behind them.
SLOW_ACTIONS = frozenset({"Authorize"})
#: A charger has at most one CALL outstanding (OCPP-J); anything beyond this is abuse.
MAX_QUEUED_CALLS = 16
#: Timed-out CALLs whose late answers are still acted on (one outstanding CALL per
#: charger, so only the last few can ever be answered).
MAX_LATE_CALLS = 4
#: WebSocket close code for a charger that keeps flooding past its budget.
POLICY_VIOLATION = 1008

#: The answer of the directly answered CALLs whose confirmation has no fields.
EMPTY_ANSWER = "{}"

#: A directly answered CALL: (session, validated camelCase payload) -> the answer's JSON.
DirectHandler = Callable[[Any, dict[str, Any]], str]


def answer_empty(_session: Any, _payload: dict[str, Any]) -> str:
    """MeterValues: the service keeps no meter data, and the answer has no fields."""
    return EMPTY_ANSWER


class TrafficLog(Protocol):
    """Where a session logs its CALLs and their answers (``evreserve_gateway.traffic``); must return at once."""

    def received(self, at_ms: int, action: str, call: str | bytes, answer: str) -> None: ...

    def sent(self, at_ms: int, action: str, call: str, answer: str | None) -> None: ...

    def invalid_frame(self) -> None: ...


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class SessionClosed(Exception):
    """The charger's socket closed before it answered."""


class OcppSession(LibraryHandlers):
    """One charger's OCPP-J session over a websockets connection."""

    #: CALLs answered without the library (see the module docstring), by action.
    _direct: ClassVar[dict[str, DirectHandler]] = {}

    def __init__(
        self,
        identity: str,
        connection: Any,
        events: ChargerEvents,
        logger: logging.LoggerAdapter[Any],
        heartbeat_s: int = 300,
        frames_per_s: float = 0.0,
        frame_burst: int = 200,
        traffic: TrafficLog | None = None,
    ) -> None:
        super().__init__(identity, connection, logger)
        self.events = events
        #: The message log of this charger's CALLs; ``None``: not logged.
        self.traffic = traffic
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
    def closed(self) -> bool:
        return self._closed

    # -- incoming frames ------------------------------------------------------------

    def take_frame(self, raw: str | bytes) -> Coroutine[Any, Any, None] | None:
        """One frame from the charger, decided synchronously: what is left to run (usually
        the answer's send), or ``None``. The charger's socket runs it eagerly
        (``ChargerSocket.serve``), so a frame whose answer goes out at once costs no task
        switch; ``frame_failed`` gets its errors."""
        try:
            return self._route(raw)
        except Exception as exc:
            self.frame_failed(exc)
            return None

    def frame_failed(self, exc: BaseException) -> None:
        # A bug in one frame's handling must not take the charger's connection down.
        self.log.error("failed to handle a frame", exc_info=exc)

    def _route(self, raw: str | bytes) -> Coroutine[Any, Any, None] | None:
        value = decode(raw)
        if self._budget is not None and not self._answers_pending(value):
            if not self._budget.take():
                return self._over_budget(value)
            self._refused = 0
        frame = classify(value, self.version)
        if isinstance(frame, Call):
            if self.traffic is not None:
                frame.raw = raw
                frame.at_ms = now_ms()
            return self._route_call(frame)
        if isinstance(frame, Answer):
            self._route_reply(frame)
            return None
        if self.traffic is not None:
            self.traffic.invalid_frame()
        if isinstance(frame, Invalid):
            return self._send_error(frame.message_id, frame.code, frame.description)
        # OCPP-J 1.6: a message with an unknown type is ignored.
        self.log.warning("ignored a frame of unknown messageTypeId", extra={"messageTypeId": frame.message_type_id})
        return None

    def _answers_pending(self, value: Any) -> bool:
        """An answer to one of our CALLs: never rate-limited (we bound those ourselves)."""
        message_id = answered_id(value)
        return message_id is not None and (message_id in self._pending or message_id in self._late)

    async def _over_budget(self, value: Any) -> None:
        """A frame over the charger's budget: CALLs get GenericError, the rest is dropped.

        OCPP-J has no "slow down" code, and a CALL must be answered, so GenericError it
        is. A charger that keeps sending regardless (a burst's worth of refusals in a
        row) is disconnected with 1008; only its own connection is affected.
        """
        self._refused += 1
        if self._refused == 1:
            self.log.warning("charger over its frame budget; refusing frames")
        if self._refused > self._frame_burst:
            if self._closer is None:
                self.log.warning("charger kept flooding; closing its connection", extra={"refused": self._refused})
                # Not awaited here: the closing handshake needs the reading loop (this
                # caller) to keep draining frames, or it waits out the close timeout.
                self._closer = asyncio.get_running_loop().create_task(
                    self._connection.close(POLICY_VIOLATION, "rate limit exceeded")
                )
            return
        message_id = refusable_call_id(value)
        if message_id is not None:
            await self._connection.send(call_error(message_id, "GenericError", "rate limit exceeded; slow down"))

    def _route_call(self, call: Call) -> Coroutine[Any, Any, None] | None:
        if call.action == "Heartbeat" and not call.payload and self._inbox is None:
            return self._reply(call, heartbeat_result(call.message_id, current_time()))
        if self._inbox is None and call.action not in SLOW_ACTIONS:
            return self._answer(call)
        if self._inbox is None:
            self._inbox = deque([call])
            self._inbox_task = asyncio.get_running_loop().create_task(self._drain_inbox())
            return None
        if len(self._inbox) < MAX_QUEUED_CALLS:
            # Queued behind the slow one so that the charger's CALLs are answered in order.
            self._inbox.append(call)
            return None
        return self._send_error(call.message_id, "GenericError", "too many CALLs outstanding", call)

    def _reply(self, call: Call, frame: str) -> Coroutine[Any, Any, None]:
        """Send the answer to a charger's CALL, and log both; the send, to await."""
        if self.traffic is not None:
            self.traffic.received(call.at_ms, call.action, call.raw, frame)
        return self._connection.send(frame)  # type: ignore[no-any-return]

    def _answer_directly(self, call: Call, handler: DirectHandler) -> Coroutine[Any, Any, None]:
        # Synchronous up to the send: per frame one awaitable (the send), not three coroutines.
        try:
            request_validator(self.version, call.action)(call.payload)
        except SchemaViolation as violation:
            return self._send_error(
                call.message_id, error_code_for(self.version, violation_code(violation)), violation.message, call
            )
        except RecursionError:
            return self._send_error(
                call.message_id, frame_error_code(self.version), "payload is nested too deeply", call
            )
        answer = handler(self, call.payload)
        return self._reply(call, call_result(call.message_id, answer))

    async def _drain_inbox(self) -> None:
        try:
            while self._inbox:
                await self._answer(self._inbox[0])
                self._inbox.popleft()
        except CONNECTION_CLOSED:
            pass
        except Exception:
            self.log.exception("failed to answer a CALL")
        finally:
            self._inbox = None
            self._inbox_task = None

    def _answer(self, call: Call) -> Coroutine[Any, Any, None]:
        """The answer to one CALL: the direct path for the frequent ones, else the library."""
        direct = self._direct.get(call.action)
        if direct is not None:
            return self._answer_directly(call, direct)
        return self._answer_by_library(call)

    async def _answer_by_library(self, call: Call) -> None:
        if not self.handles(call.action):
            # OCPP-J: NotImplemented = action unknown; NotSupported = known but not
            # supported (the library has these the other way round).
            code = "NotSupported" if is_known_action(self.version, call.action) else "NotImplemented"
            await self._send_error(call.message_id, code, f"{call.action} is not handled by this CSMS", call)
            return
        try:
            answer = await self.answer_by_library(call.message_id, call.action, call.payload)
        except OCPPError as error:
            await self._send_error(call.message_id, error_code_for(self.version, error.code), error.description, call)
            return
        except RecursionError:
            # The library's validation and key conversion recurse over the payload.
            await self._send_error(
                call.message_id, frame_error_code(self.version), "payload is nested too deeply", call
            )
            return
        except CONNECTION_CLOSED:
            raise
        except Exception:
            # OCPP-J: every CALL gets an answer, so the charger does not wait out its timeout.
            self.log.exception("failed to answer a CALL", extra={"action": call.action})
            await self._send_error(call.message_id, "InternalError", "the CSMS failed to handle this CALL", call)
            return
        if answer is not None:
            await self._reply(call, answer)

    async def _send_error(self, message_id: str, code: str, description: str, call: Call | None = None) -> None:
        """A CALLERROR; logged with its CALL when there is one (an unreadable frame is only counted)."""
        self.log.warning("answered with a CALLERROR", extra={"errorCode": code, "description": description})
        frame = call_error(message_id, code, description)
        if call is not None:
            await self._reply(call, frame)
        else:
            await self._connection.send(frame)

    def _route_reply(self, answer: Answer) -> None:
        message_id = answer.message_id
        future = self._pending.pop(message_id, None) if message_id is not None else None
        if future is None or future.done():
            late = self._late.pop(message_id, None) if message_id is not None else None
            if late is not None:
                self.log.info("the charger answered after the deadline", extra={"messageId": message_id})
                late(answer.reply)
                return
            # OCPP-J: an answer to no CALL of ours is ignored; the connection stays.
            self.log.warning("ignored an answer to no pending CALL", extra={"messageId": message_id})
            return
        future.set_result(answer.reply)

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
        try:
            call = outgoing_call(self.version, message_id, action, payload)
        except OCPPError as error:
            return CallErrorReply(error.code, f"refused to send an invalid {action}: {error.description}")
        if self._call_lock is None:
            self._call_lock = asyncio.Lock()
        async with self._call_lock:
            if self._closed:
                raise SessionClosed
            future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
            self._pending[message_id] = future
            frame = call.to_json()
            sent_at = now_ms()
            #: The charger's answer as logged; stays None if none comes in time.
            logged: str | None = None
            # Set before the send, not after it: a send cancelled midway (the caller's
            # deadline) may already have put the frame on the wire, and the charger may
            # act on it and answer. If it never went out, no answer comes and the entry
            # just ages out of the bounded late table.
            may_have_gone = False
            try:
                try:
                    may_have_gone = True
                    await self._connection.send(frame)
                except CONNECTION_CLOSED as exc:
                    raise SessionClosed from exc
                reply = await future
                try:
                    logged = answer_frame(message_id, reply)
                except Exception:
                    # The log must never change a command's outcome (a reply nested past what
                    # json.dumps takes): logged without its answer instead.
                    self.log.warning("could not log the charger's answer", exc_info=True)
            except asyncio.CancelledError:
                if may_have_gone and on_late is not None and not self._closed:
                    self._late[message_id] = on_late
                    while len(self._late) > MAX_LATE_CALLS:
                        del self._late[next(iter(self._late))]
                raise
            finally:
                self._pending.pop(message_id, None)
                if may_have_gone and self.traffic is not None:
                    self.traffic.sent(sent_at, action, frame, logged)
        if isinstance(reply, CallResultReply):
            try:
                validate_answer(self.version, message_id, action, reply.payload)
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
