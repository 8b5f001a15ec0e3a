"""The ``ocpp`` library, as far as the gateway uses it: the home of every use of its internals.

The gateway runs on ``ocpp`` 2.1.0 (pinned in ``gateway/pyproject.toml``) for its
``@on`` routing, its payload classes and its JSON-schema validation, but not for its
frame loop, its outgoing calls or its per-connection state, whose defaults are wrong
for a CSMS holding thousands of chargers (``/work/shared/ocpp-facts.md``). That takes
some of its private API, and all of it is here, so that an upgrade breaks this module
and ``tests/unit/test_gateway_ocpp_library.py``, which pins what is relied on:

* ``ChargePoint`` subclassed without its ``__init__`` (``LibraryHandlers``), with the
  attributes its call handling reads set here, and its ``route_map`` built per class;
* ``ChargePoint._handle_call`` to answer the CALLs that have an ``@on`` handler, and
  ``ChargePoint._send``, which it sends the answer through (overridden: the answer is
  handed back to the session, which sends and logs it);
* ``ocpp.messages._validate_payload`` (synchronous) for outgoing CALLs and their answers,
  and ``ocpp.messages.ASYNC_VALIDATION`` for incoming ones;
* the ``Action`` enums as the list of actions each version defines;
* the layout of the library's schema files (``schemas`` compiles them).

Nothing here knows about sockets or the session's state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import ocpp
import ocpp.messages
from ocpp.charge_point import ChargePoint
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallResult
from ocpp.routing import on as _on
from ocpp.v16.enums import Action as V16Action
from ocpp.v201.enums import Action as V201Action

from evreserve.models import OcppVersion

F = TypeVar("F", bound=Callable[..., Any])

#: The library's name of each OCPP version (its ``ocpp_version`` argument).
LIBRARY_VERSIONS = {OcppVersion.V16: "1.6", OcppVersion.V201: "2.0.1"}

_KNOWN_ACTIONS = {
    OcppVersion.V16: frozenset(a.value for a in V16Action),
    OcppVersion.V201: frozenset(a.value for a in V201Action),
}

_SCHEMA_DIRS = {OcppVersion.V16: "v16", OcppVersion.V201: "v201"}

#: Where the library's answer to the CALL being handled goes (one list per ``answer_by_library``,
#: so an answer can never land in another CALL's hands, whatever runs concurrently).
_ANSWER: ContextVar[list[str] | None] = ContextVar("library_answer", default=None)

__all__ = [
    "LIBRARY_VERSIONS",
    "LibraryHandlers",
    "OCPPError",
    "OutgoingCall",
    "is_known_action",
    "on",
    "outgoing_call",
    "schema_path",
    "use_inline_validation",
    "validate_answer",
]


def use_inline_validation() -> None:
    """Validate payloads on the event loop: microseconds per frame, cheaper than a thread hop."""
    ocpp.messages.ASYNC_VALIDATION = False


def on(action: str) -> Callable[[F], F]:
    """The library's ``@on``, typed."""
    return cast(Callable[[F], F], _on(action))


def is_known_action(version: OcppVersion, action: str) -> bool:
    """Whether ``version`` defines ``action`` at all (handled or not)."""
    return action in _KNOWN_ACTIONS[version]


def schema_path(version: OcppVersion, action: str, *, answer: bool = False) -> Path:
    """The library's schema file of a CALL's request payload, or of its answer's."""
    suffix = "Response" if answer else "" if version is OcppVersion.V16 else "Request"
    name = f"{action}{suffix}"
    return Path(ocpp.__file__).parent / _SCHEMA_DIRS[version] / "schemas" / f"{name}.json"


class OutgoingCall(Protocol):
    """A CALL the library built and validated; ``to_json`` is the frame to send."""

    def to_json(self) -> str: ...


def outgoing_call(version: OcppVersion, message_id: str, action: str, payload: dict[str, Any]) -> OutgoingCall:
    """The CALL, its payload validated by the library's schemas; raises ``OCPPError``.

    It is sent as the library serialises it: 1.6 validation may have turned the
    payload's floats into Decimals, which only the library's encoder writes.
    """
    call = Call(message_id, action, payload)
    ocpp.messages._validate_payload(call, LIBRARY_VERSIONS[version])
    return cast(OutgoingCall, call)


def validate_answer(version: OcppVersion, message_id: str, action: str, payload: dict[str, Any]) -> None:
    """Check a CALLRESULT's payload against the answer schema of ``action``; raises ``OCPPError``."""
    ocpp.messages._validate_payload(CallResult(message_id, payload, action), LIBRARY_VERSIONS[version])


class _LibraryLog(logging.LoggerAdapter[logging.Logger]):
    def isEnabledFor(self, level: int) -> bool:
        return level >= logging.WARNING and self.logger.isEnabledFor(level)


class _BoundRoutes:
    """The library's ``route_map``, built per class instead of per connection (memory)."""

    __slots__ = ("_owner",)

    def __init__(self, owner: LibraryHandlers) -> None:
        self._owner = owner

    def __contains__(self, action: object) -> bool:
        return action in self._owner._routes

    def __getitem__(self, action: str) -> dict[str, Any]:
        function, skip = self._owner._routes[action]
        return {"_on_action": function.__get__(self._owner), "_skip_schema_validation": skip}


class LibraryHandlers(ChargePoint):  # type: ignore[misc]
    """The library's ``ChargePoint``, reduced to its ``@on`` routing and its call handling."""

    version: OcppVersion
    _ocpp_version: str
    _routes: dict[str, tuple[Callable[..., Any], bool]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        routes: dict[str, tuple[Callable[..., Any], bool]] = {}
        for klass in reversed(cls.__mro__):
            for attribute in vars(klass).values():
                action = getattr(attribute, "_on_action", None)
                if action is not None:
                    routes[str(action)] = (attribute, bool(getattr(attribute, "_skip_schema_validation", False)))
        cls._routes = routes
        version = getattr(cls, "version", None)
        if version is not None:
            cls._ocpp_version = LIBRARY_VERSIONS[version]

    def __init__(self, identity: str, connection: Any, logger: logging.LoggerAdapter[Any]) -> None:
        # The base __init__ is skipped on purpose: it builds a route map, a queue and a
        # lock per connection, none of which this class uses. These are the attributes
        # the library's call handling (``_handle_call``, ``_send``) reads.
        self.id = identity
        self._connection = connection
        #: The session's own log, with the charger's identity.
        self.log = logger

    @property
    def logger(self) -> logging.LoggerAdapter[Any]:
        """What the library logs through: its per-frame INFO lines are dropped.

        They carry every payload (an Authorize answer's group token among them) and,
        at INFO, would be most of the gateway's log volume. Its warnings and errors
        still go out, with the charger's identity. Made when the library logs, which
        is only for the CALLs it answers: nothing per connection.
        """
        return _LibraryLog(self.log.logger, self.log.extra)

    @property
    def route_map(self) -> _BoundRoutes:
        """What the library's call handling looks routes up in; made when it is needed."""
        return _BoundRoutes(self)

    def handles(self, action: str) -> bool:
        """Whether an ``@on`` handler answers ``action``."""
        return action in self._routes

    async def answer_by_library(self, message_id: str, action: str, payload: dict[str, Any]) -> str | None:
        """Validate, run the ``@on`` handler, validate its answer; the answer's frame, to send.

        Raises ``OCPPError`` for a payload that breaks the schema; an exception of the
        handler is answered by the library itself (an InternalError frame).
        """
        answer: list[str] = []
        token = _ANSWER.set(answer)
        try:
            await self._handle_call(Call(message_id, action, payload))
        finally:
            _ANSWER.reset(token)
        return answer[0] if answer else None

    async def _send(self, message: str) -> None:
        """The library's call handling sends its answer through this: keep it for ``answer_by_library``."""
        answer = _ANSWER.get()
        if answer is None:  # pragma: no cover - the library sends nothing else through a CSMS's handlers
            await self._connection.send(message)
            return
        answer.append(message)
