"""The OCPP-J session with one charger, as the rest of the gateway sees it.

The package is layered; each module is the home of one concern:

* ``framing``: frames as text <-> what they are and the CALLERROR they get (pure, no I/O);
* ``library``: every use of the ``ocpp`` library's private API (one module, one test);
* ``schemas``: the library's schemas compiled for the frequent CALLs;
* ``session``: the asyncio session (routing, outgoing CALLs, the direct path);
* ``v16`` / ``v201``: each version's ``@on`` handlers.
"""

from __future__ import annotations

import logging
from typing import Any

from evreserve.models import OcppVersion

from ..charger_messages import ChargerEvents
from .framing import CallErrorReply, CallResultReply, Reply
from .library import use_inline_validation
from .session import OcppSession, SessionClosed, TrafficLog
from .v16 import V16Session
from .v201 import V201Session

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
    traffic: TrafficLog | None = None,
) -> OcppSession:
    return SESSION_CLASSES[version](
        identity, connection, events, logger, heartbeat_s, frames_per_s, frame_burst, traffic
    )


__all__ = [
    "SESSION_CLASSES",
    "CallErrorReply",
    "CallResultReply",
    "OcppSession",
    "Reply",
    "SessionClosed",
    "TrafficLog",
    "new_session",
    "use_inline_validation",
]
