"""Per-frame logging: a one-line summary at INFO, the full JSON at DEBUG."""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

FRAME_LOG = logging.getLogger("simulator.frames")

_CALL, _RESULT, _ERROR = 2, 3, 4


class _Connection(Protocol):
    async def recv(self, decode: bool | None = None) -> str | bytes: ...

    async def send(self, message: str) -> None: ...


def summarize(raw: str, actions: dict[str, str]) -> str:
    """A short description of an OCPP-J frame, naming the action of a reply from `actions`.

    `actions` maps message ids of CALLs seen so far to their action; replies are
    looked up (and forgotten) there, since a CALLRESULT does not carry its action.
    """
    try:
        frame: list[Any] = json.loads(raw)
        kind, unique_id = frame[0], str(frame[1])
    except (ValueError, TypeError, IndexError, KeyError):
        return f"unparsable frame {raw[:80]!r}"
    if kind == _CALL and len(frame) >= 4:
        action = str(frame[2])
        actions[unique_id] = action
        return f"{action} {_brief(frame[3])}".rstrip()
    action = actions.pop(unique_id, "?")
    if kind == _RESULT and len(frame) >= 3:
        return f"{action}.conf {_brief(frame[2])}".rstrip()
    if kind == _ERROR and len(frame) >= 4:
        return f"{action} CALLERROR {frame[2]} {frame[3]}".rstrip()
    return f"frame of type {kind}"


def _brief(payload: Any) -> str:
    if not isinstance(payload, dict):
        return ""
    keys = (
        "status",
        "connectorId",
        "evseId",
        "reservationId",
        "id",
        "connectorStatus",
        "reservationUpdateStatus",
        "eventType",
        "idTag",
        "transactionId",
    )
    return " ".join(f"{k}={payload[k]}" for k in keys if k in payload and not isinstance(payload[k], dict))


class FrameTap:
    """Wraps a websockets connection with the recv/send pair the `ocpp` library uses, logging each frame."""

    def __init__(self, connection: _Connection, ocpp_id: str, logger: logging.Logger = FRAME_LOG) -> None:
        self._connection = connection
        self._id = ocpp_id
        self._log = logger
        self._actions: dict[str, str] = {}

    async def recv(self) -> str:
        raw = await self._connection.recv(decode=True)
        text = raw if isinstance(raw, str) else raw.decode()
        self._record("<-", text)
        return text

    async def send(self, message: str) -> None:
        self._record("->", message)
        await self._connection.send(message)

    def _record(self, arrow: str, raw: str) -> None:
        if self._log.isEnabledFor(logging.DEBUG):
            self._log.debug("%s %s %s", self._id, arrow, raw)
        elif self._log.isEnabledFor(logging.INFO):
            self._log.info("%s %s %s", self._id, arrow, summarize(raw, self._actions))
