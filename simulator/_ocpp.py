"""The only module that touches the untyped `ocpp` library.

The rest of the simulator talks OCPP through `Link`: outgoing calls are an action
name plus snake_case fields and come back as a dict; incoming calls go to a
`CallHandler`, which first decides how to treat the frame (answer, answer late,
ignore, drop the connection, CALLERROR) and then builds the answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ocpp import v16, v201
from ocpp.charge_point import camel_to_snake_case
from ocpp.exceptions import (
    NotImplementedError as OcppNotImplemented,
)
from ocpp.exceptions import (
    NotSupportedError,
    OCPPError,
    UnknownCallErrorCodeError,
)
from ocpp.messages import MessageType, unpack
from ocpp.routing import after, on
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from simulator.state import SimulatorError, Version

# The library logs every frame at INFO and each CALLERROR received at WARNING; the
# simulator logs both itself (simulator.frames, simulator.charger), so only the
# library's errors are wanted. A logger of our own keeps this from changing the
# `ocpp` logger of a CSMS running in the same process.
_LIBRARY_LOG = logging.getLogger("simulator.ocpp")
_LIBRARY_LOG.setLevel(logging.ERROR)
_LOG = logging.getLogger("simulator.charger")


class RemoteCallError(SimulatorError):
    """The CSMS answered a call with a CALLERROR (or with a payload that broke the schema)."""

    def __init__(self, action: str, code: str, description: str) -> None:
        super().__init__(f"{action}: {code} {description}".strip())
        self.action = action
        self.code = code
        self.description = description


class LinkClosed(SimulatorError):
    """The connection closed before the CSMS answered."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to do with an incoming CALL before any handler sees it."""

    delay: float = 0.0
    ignore: bool = False
    drop: bool = False
    error: str | None = None  # a CALLERROR code to answer with instead


@dataclasses.dataclass(frozen=True)
class Reply:
    fields: dict[str, Any]
    # Runs once the answer is on the wire, so that e.g. StatusNotification Reserved
    # never reaches the CSMS before the ReserveNow.conf that caused it.
    after: Callable[[], None] | None = None


class CallHandler(Protocol):
    def plan(self, action: str, payload: Mapping[str, Any]) -> Plan: ...

    def answer(self, action: str, payload: dict[str, Any]) -> Reply: ...


class Transport(Protocol):
    async def recv(self) -> str: ...

    async def send(self, message: str) -> None: ...


ANSWERED: dict[Version, frozenset[str]] = {
    Version.V16: frozenset({"ReserveNow", "CancelReservation", "GetConfiguration"}),
    Version.V201: frozenset({"ReserveNow", "CancelReservation", "GetVariables"}),
}


class _Routes:
    """@on/@after routes shared by both versions; the version classes add their own."""

    _handler: CallHandler
    _after_reply: dict[str, Callable[[], None]]
    _call_result: Any

    def _answer(self, action: str, unique_id: str, payload: dict[str, Any]) -> Any:
        reply = self._handler.answer(action, payload)
        if reply.after is not None:
            self._after_reply[unique_id] = reply.after
        return getattr(self._call_result, action)(**reply.fields)

    def _replied(self, unique_id: str) -> None:
        callback = self._after_reply.pop(unique_id, None)
        if callback is not None:
            callback()

    @on("ReserveNow")  # type: ignore[untyped-decorator]
    def _on_reserve_now(self, call_unique_id: str, **payload: Any) -> Any:
        return self._answer("ReserveNow", call_unique_id, payload)

    # A synchronous @after hook runs inline right after the answer is sent (only
    # awaitables are turned into tasks), which is the ordering wanted here.
    @after("ReserveNow")  # type: ignore[untyped-decorator]
    def _after_reserve_now(self, call_unique_id: str, **_: Any) -> None:
        self._replied(call_unique_id)

    @on("CancelReservation")  # type: ignore[untyped-decorator]
    def _on_cancel_reservation(self, call_unique_id: str, **payload: Any) -> Any:
        return self._answer("CancelReservation", call_unique_id, payload)

    @after("CancelReservation")  # type: ignore[untyped-decorator]
    def _after_cancel_reservation(self, call_unique_id: str, **_: Any) -> None:
        self._replied(call_unique_id)


class _Cp16(_Routes, v16.ChargePoint):  # type: ignore[misc]
    @on("GetConfiguration")  # type: ignore[untyped-decorator]
    def _on_get_configuration(self, call_unique_id: str, **payload: Any) -> Any:
        return self._answer("GetConfiguration", call_unique_id, payload)


class _Cp201(_Routes, v201.ChargePoint):  # type: ignore[misc]
    @on("GetVariables")  # type: ignore[untyped-decorator]
    def _on_get_variables(self, call_unique_id: str, **payload: Any) -> Any:
        return self._answer("GetVariables", call_unique_id, payload)


def _charge_point_class(version: Version) -> type[Any]:
    base = _Cp16 if version is Version.V16 else _Cp201

    class _SimulatedChargePoint(base):  # type: ignore[valid-type,misc]
        def __init__(
            self, ocpp_id: str, transport: Transport, handler: CallHandler, drop: Callable[[], None], timeout: float
        ) -> None:
            super().__init__(ocpp_id, transport, response_timeout=timeout, logger=_LIBRARY_LOG)
            self._handler = handler
            self._after_reply: dict[str, Callable[[], None]] = {}
            self._drop = drop
            self._late: set[asyncio.Task[None]] = set()

        async def route_message(self, raw_msg: str) -> None:
            try:
                msg = unpack(raw_msg)
            except OCPPError:
                await super().route_message(raw_msg)  # the library logs it and stays silent
                return
            if msg.message_type_id != MessageType.Call:
                await super().route_message(raw_msg)
                return
            plan = self._handler.plan(msg.action, camel_to_snake_case(msg.payload))
            if plan.ignore:
                return
            if plan.drop:
                self._drop()
                return
            if plan.error is not None:
                error = OcppNotImplemented if plan.error == "NotImplemented" else NotSupportedError
                await self._send(msg.create_call_error(error(description="Reservation is not supported")).to_json())
                return
            if msg.action not in self.route_map:
                # Answered here rather than by the library, which logs a traceback for it.
                error = OcppNotImplemented if msg.action in _KNOWN_ACTIONS[version] else NotSupportedError
                _LOG.warning("%s: answering %s with %s", self.id, msg.action, error.code)
                await self._send(msg.create_call_error(error(description=f"{msg.action} is not handled")).to_json())
                return
            if plan.delay > 0:
                # Answered from a task so that the charger keeps reading frames (and
                # receiving the answers to its own heartbeats) while it is "slow".
                task = asyncio.create_task(self._answer_late(raw_msg, plan.delay))
                self._late.add(task)
                task.add_done_callback(self._late.discard)
                return
            await super().route_message(raw_msg)

        async def _answer_late(self, raw_msg: str, delay: float) -> None:
            await asyncio.sleep(delay)
            try:
                await super().route_message(raw_msg)
            except Exception as exc:  # a late answer to a closed socket is expected
                _LOG.info("%s: late answer not sent: %r", self.id, exc)

        def cancel_late_answers(self) -> None:
            for task in list(self._late):
                task.cancel()

    return _SimulatedChargePoint


_KNOWN_ACTIONS: dict[Version, frozenset[str]] = {
    Version.V16: frozenset(a.value for a in v16.enums.Action),
    Version.V201: frozenset(a.value for a in v201.enums.Action),
}

_CALLS: dict[Version, Any] = {Version.V16: call16, Version.V201: call201}


class Link:
    """One OCPP session over one connection, from the charger's side."""

    def __init__(
        self,
        ocpp_id: str,
        version: Version,
        transport: Transport,
        handler: CallHandler,
        *,
        drop: Callable[[], None],
        response_timeout: float = 30.0,
    ) -> None:
        self._version = version
        self._cp: Any = _charge_point_class(version)(ocpp_id, transport, handler, drop, response_timeout)
        self._closed = asyncio.Event()

    async def run(self) -> None:
        """Read and dispatch frames until the connection closes (then it raises ConnectionClosed)."""
        try:
            await self._cp.start()
        finally:
            self._closed.set()
            self._cp.cancel_late_answers()

    async def call(self, action: str, **fields: Any) -> dict[str, Any]:
        """Send a CALL and return the answer's fields (snake_case; nested objects are dicts)."""
        payload = getattr(_CALLS[self._version], action)(**fields)
        sent = asyncio.ensure_future(self._cp.call(payload, suppress=False))
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            # The library would wait out the whole response timeout after a
            # disconnect; racing it against the reader ends the wait at once.
            await asyncio.wait({sent, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            answered = sent.done()
            if not answered:
                sent.cancel()
        if not answered:
            raise LinkClosed(f"connection closed while waiting for {action}")
        try:
            result = sent.result()
        except OCPPError as exc:
            raise RemoteCallError(action, exc.code, str(exc.description)) from exc
        except UnknownCallErrorCodeError as exc:
            raise RemoteCallError(action, "Unknown", str(exc)) from exc
        return dataclasses.asdict(result)
