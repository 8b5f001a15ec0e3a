"""The home of the connection table: the chargers this instance holds, and the registry's record of them.

A charger admitted by the handshake gets its session here (``handle``), is registered
as connected to this instance (with its queue URL, so commands find it), replaces an
older connection of the same identity, and is recorded disconnected when it leaves.
Writes the registry missed during a storage outage are made again once it is back
(``watch_storage``), and when the queue's URL changed (``queue_moved``). Commands find
their charger's session here (``session_for``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from websockets.frames import CloseCode

from evreserve.channel import CloseSession
from evreserve.errors import DependencyUnavailable, NotFound, StaleWrite
from evreserve.models import Command, Connection, ConnectionState, utcnow
from evreserve.storage.registry import RegistryStore
from evreserve.storage.reservations import ReservationStore

from .admission import Admission
from .background import Background
from .charger_socket import CONNECTION_CLOSED, ChargerSocket
from .commands.queue import InstanceQueue
from .logs import ChargerLogger
from .offload import Offload
from .protocol import OcppSession, new_session
from .reports import ChargerReports
from .settings import GatewaySettings
from .tokens import TokenCache
from .traffic import MessageLog

log = logging.getLogger("evreserve_gateway")
#: The ocpp library's own records for a session go here, with the charger identity.
ocpp_log = logging.getLogger("evreserve_gateway.ocpp")


@dataclass(slots=True)
class Held:
    """A charger connection this instance holds."""

    charger_id: int
    account_id: int
    ocpp_id: str
    session_id: str
    websocket: ChargerSocket
    session: OcppSession
    #: What was registered for it, to write again after a storage outage.
    connection: Connection | None = None


class Connections:
    """The charger connections of one gateway instance, by identity."""

    def __init__(
        self,
        settings: GatewaySettings,
        registry: RegistryStore,
        reservations: ReservationStore,
        io: Offload,
        background: Background,
        stopping: asyncio.Event,
        *,
        admission_of: Callable[[ChargerSocket], Admission | None],
        queue_url: Callable[[], str],
        queue: InstanceQueue,
        tokens: TokenCache,
        message_log: MessageLog | None = None,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._reservations = reservations
        self._io = io
        self._background = background
        self._stopping = stopping
        #: What the handshake decided for a connection.
        self._admission_of = admission_of
        #: The instance queue's current URL, registered with each connection.
        self._queue_url = queue_url
        #: For asking another instance to close a connection this one replaced.
        self._queue = queue
        self._message_log = message_log
        #: Drivers' tokens, shared by every charger of the instance.
        self._tokens = tokens
        self._held: dict[str, Held] = {}
        #: False from a failed storage call until the connections are registered again.
        self._storage_ok = True
        #: Disconnections that could not be recorded: charger id -> (session id, when).
        self._unrecorded_disconnections: dict[int, tuple[str, datetime]] = {}

    def holds(self, ocpp_id: str) -> bool:
        return ocpp_id in self._held

    @property
    def charger_count(self) -> int:
        return len(self._held)

    @property
    def storage_ok(self) -> bool:
        return self._storage_ok

    def close_sessions(self) -> None:
        """Fail every session's pending calls now (the gateway stops); the sockets close after."""
        for held in list(self._held.values()):
            held.session.close()

    # -- a charger's connection -----------------------------------------------------------

    async def handle(self, websocket: ChargerSocket) -> None:
        admission = self._admission_of(websocket)
        if admission is None:  # pragma: no cover - process_request always admits first
            await websocket.close(CloseCode.INTERNAL_ERROR)
            return
        # One context dict for both loggers of the connection: it lives as long as the socket.
        context = {"charger": admission.ocpp_id}
        logger = ChargerLogger(log, context)
        if admission.version is None:
            logger.warning("refused: no acceptable OCPP subprotocol offered")
            await websocket.close(CloseCode.PROTOCOL_ERROR, "no acceptable OCPP subprotocol")
            return
        session_id = uuid.uuid4().hex
        reports = ChargerReports(
            admission.charger_id,
            admission.account_id,
            self._registry,
            self._reservations,
            self._io,
            self._background,
            logger,
            self._tokens,
        )
        session = new_session(
            admission.version,
            admission.ocpp_id,
            websocket,
            reports,
            ChargerLogger(ocpp_log, context),
            self._settings.gateway_heartbeat_interval_s,
            self._settings.gateway_charger_frames_per_s,
            self._settings.gateway_charger_frame_burst,
            traffic=(
                self._message_log.for_charger(
                    admission.charger_id, admission.account_id, admission.ocpp_id, admission.version.subprotocol
                )
                if self._message_log is not None
                else None
            ),
        )
        held = Held(admission.charger_id, admission.account_id, admission.ocpp_id, session_id, websocket, session)
        previous = self._held.get(held.ocpp_id)
        self._held[held.ocpp_id] = held
        if previous is not None:
            logger.info("a new connection replaces the previous one", extra={"previousSession": previous.session_id})
            self._release(previous, CloseCode.NORMAL_CLOSURE, "replaced by a newer connection")
        registered = False
        try:
            registered = await self._register(held, admission, logger)
            if registered:
                logger.info(
                    "charger connected",
                    extra={"sessionId": session_id, "protocol": admission.version.value, "peer": _peer(websocket)},
                )
                await websocket.serve(session.take_frame, session.frame_failed)
        except CONNECTION_CLOSED:
            pass
        finally:
            session.close()
            if self._held.get(held.ocpp_id) is held:
                del self._held[held.ocpp_id]
            if registered:
                await self._deregister(held, logger)
            logger.info(
                "charger disconnected",
                extra={"sessionId": session_id, "closeCode": websocket.close_code, "reason": websocket.close_reason},
            )

    async def _register(self, held: Held, admission: Admission, logger: ChargerLogger) -> bool:
        connection = Connection(
            state=ConnectionState.CONNECTED,
            timestamp=utcnow(),
            session_id=held.session_id,
            instance_id=self._settings.instance_id,
            queue_url=self._queue_url(),
            protocol=admission.version,
        )
        try:
            replaced = await self._io(self._registry.register_connection, held.charger_id, connection)
            held.connection = connection
            if replaced is not None:
                self._close_elsewhere(held, replaced, logger)
        except StaleWrite:
            logger.warning("a newer connection holds this charger elsewhere; closing this one")
            await held.websocket.close(CloseCode.POLICY_VIOLATION, "a newer connection holds this charger")
            return False
        except NotFound:
            logger.warning("the charger was deleted; closing")
            await held.websocket.close(CloseCode.POLICY_VIOLATION, "unknown charger")
            return False
        except DependencyUnavailable:
            logger.exception("could not register the connection; closing")
            self._storage_failed()
            await held.websocket.close(CloseCode.TRY_AGAIN_LATER, "try again later")
            return False
        return True

    def _close_elsewhere(self, held: Held, replaced: Connection, logger: ChargerLogger) -> None:
        """A newer connection on this instance: the instance holding the older one closes it.

        Otherwise the old socket (possibly an impostor's, or a charger's stale half-open
        one) would stay open on its instance, receiving nothing but able to report.
        """
        if replaced.state is not ConnectionState.CONNECTED or replaced.instance_id == self._settings.instance_id:
            return  # nothing open elsewhere; one here was closed when this one was admitted
        request = CloseSession(
            charger_id=held.charger_id, session_id=replaced.session_id, reason="a newer connection holds this charger"
        )
        logger.info("asking the instance of the older connection to close it", extra={"instance": replaced.instance_id})
        send = self._io(self._queue.send_close, replaced.queue_url, request)
        self._background.spawn(send, "close an older connection elsewhere", logger)

    def close_charger(self, request: CloseSession) -> None:
        """Close a held session, as a control message asks (credentials changed, deleted, replaced)."""
        held = next((h for h in self._held.values() if h.charger_id == request.charger_id), None)
        if held is None or (request.session_id is not None and request.session_id != held.session_id):
            return
        logger = ChargerLogger(log, {"charger": held.ocpp_id})
        logger.warning("closing the session as asked", extra={"reason": request.reason, "sessionId": held.session_id})
        self._release(held, CloseCode.POLICY_VIOLATION, request.reason)

    async def _deregister(self, held: Held, logger: ChargerLogger) -> None:
        at = utcnow()
        try:
            await self._io(self._registry.register_disconnection, held.charger_id, held.session_id, at)
        except Exception:
            # Left as is, the registry would show the charger connected here until it
            # reconnects; the watcher records it once storage is back.
            logger.exception("could not record the disconnection; retried when storage is back")
            self._unrecorded_disconnections[held.charger_id] = (held.session_id, at)
            self._storage_failed()

    def _release(self, held: Held, code: CloseCode, reason: str) -> None:
        held.session.close()
        self._background.spawn(held.websocket.close(code, reason), "close a replaced connection")

    def session_for(self, command: Command) -> OcppSession | None:
        """The session a command may be sent on, or ``None`` (the charger is not held here)."""
        held = self._held.get(command.ocpp_id)
        # Every coordinate of the command must match the connection: a command of one
        # account can never reach a charger (or a re-registered identity) of another.
        if (
            held is None
            or held.charger_id != command.charger_id
            or held.account_id != command.account_id
            or held.session.version is not command.ocpp_version
            or held.session.closed
        ):
            return None
        return held.session

    # -- storage outages ----------------------------------------------------------------

    def _storage_failed(self) -> None:
        if self._storage_ok:
            log.warning("storage is failing; connections are registered again when it is back")
        self._storage_ok = False

    async def watch_storage(self) -> None:
        """Probe DynamoDB now and then; after an outage, write every held connection again.

        Registrations and disconnections attempted during an outage are lost, and a
        registry restored from older data may not name this instance's connections; a
        charger the registry does not place here gets no commands. The probe is one
        cheap read per interval per instance, not per charger.
        """
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._settings.gateway_storage_probe_s)
            if self._stopping.is_set():
                return
            try:
                await self._io(self._registry.get_charger, 0)
            except Exception:
                self._storage_failed()
                continue
            if not self._storage_ok or self._unrecorded_disconnections:
                self._storage_ok = await self._register_again()

    async def queue_moved(self) -> None:
        """The instance queue was created again under another URL: every held connection must name it."""
        await self.register_again()

    async def register_again(self) -> None:
        """Write every held connection again: they were lost (an outage, a new queue, this instance reaped)."""
        self._storage_ok = await self._register_again()

    async def _register_again(self) -> bool:
        """Write every held connection (with the current queue URL) and the unrecorded disconnections."""
        for held in list(self._held.values()):
            if held.connection is None or self._held.get(held.ocpp_id) is not held:
                continue
            logger = ChargerLogger(log, {"charger": held.ocpp_id})
            connection = held.connection.model_copy(update={"queue_url": self._queue_url()})
            try:
                await self._io(self._registry.register_connection, held.charger_id, connection)
                held.connection = connection
            except StaleWrite:
                logger.warning("a newer connection holds this charger elsewhere; closing this one")
                self._release(held, CloseCode.POLICY_VIOLATION, "a newer connection holds this charger")
            except NotFound:
                # Deleted, or not restored yet: the charger's reconnection looks it up again.
                logger.warning("the charger is not in the registry; asking it to reconnect")
                self._release(held, CloseCode.TRY_AGAIN_LATER, "try again later")
            except Exception:
                logger.exception("could not register the connection again; retrying later")
                return False
        for charger_id, (session_id, at) in list(self._unrecorded_disconnections.items()):
            try:
                await self._io(self._registry.register_disconnection, charger_id, session_id, at)
            except Exception:
                log.exception("could not record a disconnection; retrying later", extra={"chargerId": charger_id})
                return False
            del self._unrecorded_disconnections[charger_id]
        log.info("storage is back; connections registered again", extra={"chargers": len(self._held)})
        return True


def _peer(websocket: ChargerSocket) -> str:
    address = websocket.remote_address
    return f"{address[0]}:{address[1]}" if address else "?"
