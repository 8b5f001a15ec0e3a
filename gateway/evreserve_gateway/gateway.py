"""The gateway process: the WebSocket server chargers connect to, and this instance's command queue.

Usage, in-process (tests, the local runner)::

    async with Gateway(GatewaySettings()) as gateway:
        ...  # chargers connect to ws://127.0.0.1:{gateway.port}/ocpp/{ocppId}

``python -m evreserve_gateway`` runs it until SIGTERM / SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import ssl
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from weakref import WeakKeyDictionary

from botocore.exceptions import ClientError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHeader
from websockets.frames import CloseCode
from websockets.headers import parse_authorization_basic, parse_subprotocol
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from evreserve import aws
from evreserve.channel import CommandLedger
from evreserve.errors import DependencyUnavailable, NotFound, StaleWrite
from evreserve.models import Charger, Command, Connection, ConnectionState, utcnow
from evreserve.security import verify_password
from evreserve.storage.registry import RegistryStore
from evreserve.storage.reservations import ReservationStore

from .admission import (
    Admission,
    HandshakeGate,
    LoginThrottle,
    VerifiedPasswords,
    address_key,
    choose_version,
    identity_from_path,
)
from .background import Background
from .commands import CommandRunner
from .instance_queue import InstanceQueue, queue_is_gone
from .logs import ChargerLogger, quiet_libraries
from .ocpp_session import OcppSession, new_session, use_inline_validation
from .offload import Offload
from .reports import ChargerReports
from .settings import GatewaySettings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger("evreserve_gateway")
#: The ocpp library's own records for a session go here, with the charger identity.
ocpp_log = logging.getLogger("evreserve_gateway.ocpp")

HEALTH_PATH = "/health"
#: Margin over the long-poll wait for the HTTP read of ReceiveMessage.
_POLL_READ_MARGIN_S = 10
#: Longest pause between attempts to reach a failing SQS.
MAX_POLL_BACKOFF_S = 5.0
#: Pending TCP connections the kernel holds for accept (capped by net.core.somaxconn).
#: asyncio's 100 overflows in a connect storm, and a dropped SYN costs the charger a
#: 1 s (then 3 s, 7 s) retransmission before the gateway even sees it.
LISTEN_BACKLOG = 4096
#: How often a connect storm's refusals are logged (as a count).
STORM_LOG_EVERY_S = 10.0


@dataclass(slots=True)
class Held:
    """A charger connection this instance holds."""

    charger_id: int
    account_id: int
    ocpp_id: str
    session_id: str
    websocket: ServerConnection
    session: OcppSession
    #: What was registered for it, to write again after a storage outage.
    connection: Connection | None = None


class Gateway:
    """One gateway instance: holds charger connections and executes the commands queued for them."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        dynamodb: DynamoDBClient | None = None,
        sqs: SQSClient | None = None,
    ) -> None:
        self.settings = settings
        dynamodb = dynamodb or aws.dynamodb_client(settings)
        # Long polls outlast the core's short read timeout, so they get their own client;
        # an injected client (tests) serves both and must allow for the wait.
        poll_sqs = sqs or aws.sqs_client(
            settings.model_copy(update={"aws_read_timeout_s": settings.gateway_queue_wait_s + _POLL_READ_MARGIN_S})
        )
        sqs = sqs or aws.sqs_client(settings)
        self.registry = RegistryStore(dynamodb, settings.registry_table)
        self.reservations = ReservationStore(dynamodb, settings.reservations_table)
        self.ledger = CommandLedger(dynamodb, settings.commands_table, settings.reservations_table)
        self.queue = InstanceQueue(sqs, settings.queue_name)
        self._poll_queue = InstanceQueue(poll_sqs, settings.queue_name)
        self._io = Offload(settings.gateway_io_threads, "gw-io")
        self._auth = Offload(settings.gateway_auth_threads, "gw-auth")
        self._passwords = VerifiedPasswords()
        self._throttle = LoginThrottle(
            identity_free=settings.gateway_login_failures_per_identity,
            address_free=settings.gateway_login_failures_per_address,
            base_s=settings.gateway_login_lockout_base_s,
            max_s=settings.gateway_login_lockout_max_s,
        )
        #: Identities with a scrypt check running: parallel guesses must not all get
        #: checked before the first failure is counted.
        self._verifying: set[str] = set()
        self._checks: set[asyncio.Task[bool]] = set()
        self._gate = HandshakeGate(settings.gateway_max_handshakes, settings.gateway_handshake_timeout_s)
        self._admissions: WeakKeyDictionary[ServerConnection, Admission] = WeakKeyDictionary()
        self._held: dict[str, Held] = {}
        self._background = Background()
        self._runner = CommandRunner(
            self.ledger,
            self.queue,
            self._io,
            settings.instance_id,
            self._session_for,
            keep_poison_messages=settings.command_dlq_url is not None,
            delete_linger_s=settings.gateway_delete_linger_s,
        )
        self._server: Server | None = None
        self._poller: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._wake_poller = asyncio.Event()
        #: False from a failed storage call until the connections are registered again.
        self._storage_ok = True
        #: Disconnections that could not be recorded: charger id -> (session id, when).
        self._unrecorded_disconnections: dict[int, tuple[str, datetime]] = {}
        self._stopping = False
        self._stopped: asyncio.Future[None] | None = None

    # -- public surface ---------------------------------------------------------------

    @property
    def instance_id(self) -> str:
        return self.settings.instance_id

    @property
    def queue_url(self) -> str:
        return self.queue.url

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the gateway is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """The base URL chargers use here: ``{url}/{ocppId}``."""
        scheme = "wss" if self.settings.gateway_tls_cert_file else "ws"
        return f"{scheme}://{self.settings.gateway_host}:{self.port}/ocpp"

    def holds(self, ocpp_id: str) -> bool:
        return ocpp_id in self._held

    @property
    def charger_count(self) -> int:
        return len(self._held)

    @property
    def storage_ok(self) -> bool:
        """False while DynamoDB is failing and until the held connections are registered again."""
        return self._storage_ok

    async def start(self) -> None:
        quiet_libraries()
        use_inline_validation()
        await self._create_queue()
        s = self.settings
        self._server = await serve(
            self._handle,
            s.gateway_host,
            s.gateway_port,
            process_request=self._process_request,
            select_subprotocol=self._select_subprotocol,
            ping_interval=s.gateway_ping_interval_s,
            ping_timeout=s.gateway_ping_timeout_s,
            max_size=s.gateway_max_frame_bytes,
            compression="deflate" if s.gateway_compression else None,
            ssl=self._ssl_context(),
            # Past our own handshake budget the charger is answered 503; websockets'
            # timeout only catches what never reached it (a peer that sends no request).
            open_timeout=2 * s.gateway_handshake_timeout_s,
            backlog=LISTEN_BACKLOG,
            server_header=None,
            logger=logging.getLogger("websockets.server"),
        )
        self._poller = asyncio.get_running_loop().create_task(self._poll())
        self._watcher = asyncio.get_running_loop().create_task(self._watch_storage())
        self._stopped = asyncio.get_running_loop().create_future()
        log.info(
            "gateway started",
            extra={"instanceId": self.instance_id, "port": self.port, "queueUrl": self.queue_url},
        )

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def wait_stopped(self) -> None:
        if self._stopped is not None:
            await asyncio.shield(self._stopped)

    async def stop(self) -> None:
        """Stop accepting; let in-flight commands finish (bounded); close chargers with 1012; delete the queue."""
        if self._stopping:
            await self.wait_stopped()
            return
        self._stopping = True
        self._wake_poller.set()
        log.info("gateway stopping", extra={"instanceId": self.instance_id, "chargers": len(self._held)})
        server = self._server
        try:
            if server is not None:
                # Refuses new connections at once; open ones keep running to finish their commands.
                server.server.close()
            if not await self._runner.join(limit_s=self.settings.gateway_drain_timeout_s):
                log.warning("closing chargers with commands still in flight; they end offline")
            for held in list(self._held.values()):
                held.session.close()
            if server is not None:
                server.close(close_connections=True, code=CloseCode.SERVICE_RESTART, reason="gateway restarting")
                await server.wait_closed()
            if self._poller is not None:
                try:
                    await self._io(self.queue.wake_up)
                except Exception:
                    log.exception("could not wake the long poll; waiting it out")
                await self._poller
            if self._watcher is not None:
                await self._watcher
            await self._fail_queued_commands()
            await self._runner.join()
            try:
                await self._io(self.queue.delete_queue)
            except Exception:
                log.exception("could not delete the instance queue", extra={"queueUrl": self.queue_url})
            await self._background.join(limit_s=5.0)
        finally:
            self._io.shutdown()
            self._auth.shutdown()
            if self._stopped is not None and not self._stopped.done():
                self._stopped.set_result(None)
            log.info("gateway stopped", extra={"instanceId": self.instance_id})

    async def _create_queue(self) -> None:
        """Create (or find) this instance's queue; if its URL changed, registrations follow."""
        before = self.queue.url
        self._poll_queue.url = await self._io(
            self.queue.create,
            visibility_s=self.settings.gateway_queue_visibility_s,
            wait_s=self.settings.gateway_queue_wait_s,
            dlq_url=self.settings.command_dlq_url,
            max_receive_count=self.settings.gateway_queue_max_receive_count,
        )
        if before and before != self.queue.url:
            self._storage_ok = await self._register_again()

    # -- the opening handshake ----------------------------------------------------------

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path == HEALTH_PATH:
            return self._health(connection)
        identity = identity_from_path(request.path)
        if identity is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "Chargers connect to /ocpp/{identity}.\n")
        if self._stopping:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "Restarting; connect again.\n")
        address = address_key(connection.remote_address[0] if connection.remote_address else None)
        # Locked out: no registry read and no scrypt, so a guesser costs almost nothing.
        wait = self._throttle.retry_after(identity, address)
        if wait > 0:
            return _too_many(connection, wait)
        if not self._gate.enter():
            return self._busy(connection)
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.settings.gateway_handshake_timeout_s):
                return await self._admit(connection, request, identity, address)
        except TimeoutError:
            log.warning(
                "handshake over its time budget; asked the charger to retry",
                extra={"charger": identity, "handshakesInProgress": self._gate.in_progress},
            )
            return self._busy(connection)
        except asyncio.CancelledError:
            # websockets gave up on the handshake (its open timeout) or the server stops.
            log.warning(
                "handshake abandoned",
                extra={"charger": identity, "elapsedS": round(time.monotonic() - started, 3)},
            )
            raise
        finally:
            self._gate.leave()

    async def _admit(
        self, connection: ServerConnection, request: Request, identity: str, address: str | None
    ) -> Response | None:
        try:
            charger = await self._io(self.registry.get_charger_by_ocpp_id, identity)
        except DependencyUnavailable:
            log.exception("registry unreachable during a handshake", extra={"charger": identity})
            response = connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "Try again later.\n")
            response.headers["Retry-After"] = str(self._gate.refuse())
            return response
        # The identity is global: it points at exactly one charger of one account. A
        # record that does not name this identity (a pointer left stale) admits nobody.
        if charger is None or charger.ocpp_id != identity:
            log.info("refused an unknown charger", extra={"charger": identity})
            self._throttle.unknown_identity(address)
            return connection.respond(HTTPStatus.NOT_FOUND, "Unknown charger.\n")
        verdict = await self._authenticated(charger, request.headers.get("Authorization"))
        if verdict is None:
            # The same identity's password is being checked (an earlier attempt of this
            # charger, or a guesser): no second scrypt in parallel.
            return _too_many(connection, 1.0)
        if not verdict:
            log.warning("refused a charger's credentials", extra={"charger": identity, "peer": address})
            self._throttle.failed(identity, address)
            response = connection.respond(HTTPStatus.UNAUTHORIZED, "Invalid credentials.\n")
            response.headers["WWW-Authenticate"] = 'Basic realm="ocpp", charset="UTF-8"'
            return response
        self._throttle.succeeded(identity)
        try:
            offered = _offered_subprotocols(request.headers)
        except InvalidHeader:
            return connection.respond(HTTPStatus.BAD_REQUEST, "Malformed Sec-WebSocket-Protocol.\n")
        version = choose_version(offered, charger.ocpp_version)
        self._admissions[connection] = Admission(charger.id, charger.account_id, charger.ocpp_id, version)
        return None

    async def _authenticated(self, charger: Charger, header: str | None) -> bool | None:
        """Whether the credentials are the charger's; ``None`` when a check for it is already running."""
        if header is None:
            return charger.allow_no_password
        try:
            username, password = parse_authorization_basic(header)
        except InvalidHeader:
            return False
        if username != charger.ocpp_id:
            return False
        if charger.password_hash is None:
            return charger.allow_no_password
        if self._passwords.known(charger, password):
            return True
        if charger.ocpp_id in self._verifying:
            return None
        self._verifying.add(charger.ocpp_id)
        check = asyncio.get_running_loop().create_task(self._verify(charger, password, charger.password_hash))
        self._checks.add(check)
        check.add_done_callback(self._checks.discard)
        # Shielded: a handshake out of time leaves the check to finish, so the charger's
        # retry finds its password verified instead of paying scrypt again.
        return await asyncio.shield(check)

    async def _verify(self, charger: Charger, password: str, password_hash: str) -> bool:
        try:
            ok = await self._auth(verify_password, password, password_hash)
        finally:
            self._verifying.discard(charger.ocpp_id)
        if ok:
            self._passwords.remember(charger, password)
        return ok

    def _busy(self, connection: ServerConnection) -> Response:
        """503 with a Retry-After that spreads a connect storm's retries (see ``HandshakeGate``)."""
        retry_s = self._gate.refuse()
        refused = self._gate.due_report(STORM_LOG_EVERY_S)
        if refused:
            log.warning(
                "connect storm: refused handshakes with 503 + Retry-After",
                extra={"refused": refused, "handshakesInProgress": self._gate.in_progress, "retryAfterS": retry_s},
            )
        response = connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "Busy; connect again after Retry-After.\n")
        response.headers["Retry-After"] = str(retry_s)
        return response

    def _select_subprotocol(self, connection: ServerConnection, offered: Any) -> Subprotocol | None:
        # Returning None completes the handshake without a subprotocol; the handler then
        # closes it if no version was agreed (OCPP-J 3.2), or speaks the registry's one.
        admission = self._admissions.get(connection)
        if admission is None or admission.version is None:
            return None
        chosen = admission.version.subprotocol
        return Subprotocol(chosen) if chosen in offered else None

    def _health(self, connection: ServerConnection) -> Response:
        status = HTTPStatus.SERVICE_UNAVAILABLE if self._stopping else HTTPStatus.OK
        body = {
            "status": "stopping" if self._stopping else "ok",
            "instanceId": self.instance_id,
            "chargers": len(self._held),
            "commandsInFlight": self._runner.in_flight,
            "handshakesInProgress": self._gate.in_progress,
        }
        response = connection.respond(status, json.dumps(body) + "\n")
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        return response

    def _ssl_context(self) -> ssl.SSLContext | None:
        cert, key = self.settings.gateway_tls_cert_file, self.settings.gateway_tls_key_file
        if cert is None or key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # OCPP security profile 2
        context.load_cert_chain(cert, key)
        return context

    # -- a charger's connection -----------------------------------------------------------

    async def _handle(self, websocket: ServerConnection) -> None:
        admission = self._admissions.pop(websocket, None)
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
            self.registry,
            self.reservations,
            self._io,
            self._background,
            logger,
        )
        session = new_session(
            admission.version,
            admission.ocpp_id,
            websocket,
            reports,
            ChargerLogger(ocpp_log, context),
            self.settings.gateway_heartbeat_interval_s,
            self.settings.gateway_charger_frames_per_s,
            self.settings.gateway_charger_frame_burst,
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
                async for frame in websocket:
                    await session.route_message(frame)
        except ConnectionClosed:
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
            instance_id=self.instance_id,
            queue_url=self.queue_url,
            protocol=admission.version,
        )
        try:
            await self._io(self.registry.register_connection, held.charger_id, connection)
            held.connection = connection
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

    async def _deregister(self, held: Held, logger: ChargerLogger) -> None:
        at = utcnow()
        try:
            await self._io(self.registry.register_disconnection, held.charger_id, held.session_id, at)
        except Exception:
            # Left as is, the registry would show the charger connected here until it
            # reconnects; the watcher records it once storage is back.
            logger.exception("could not record the disconnection; retried when storage is back")
            self._unrecorded_disconnections[held.charger_id] = (held.session_id, at)
            self._storage_failed()

    # -- storage outages ----------------------------------------------------------------

    def _storage_failed(self) -> None:
        if self._storage_ok:
            log.warning("storage is failing; connections are registered again when it is back")
        self._storage_ok = False

    async def _watch_storage(self) -> None:
        """Probe DynamoDB now and then; after an outage, write every held connection again.

        Registrations and disconnections attempted during an outage are lost, and a
        registry restored from older data may not name this instance's connections; a
        charger the registry does not place here gets no commands. The probe is one
        cheap read per interval per instance, not per charger.
        """
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_poller.wait(), self.settings.gateway_storage_probe_s)
            if self._stopping:
                return
            try:
                await self._io(self.registry.get_charger, 0)
            except Exception:
                self._storage_failed()
                continue
            if not self._storage_ok or self._unrecorded_disconnections:
                self._storage_ok = await self._register_again()

    async def _register_again(self) -> bool:
        """Write every held connection (with the current queue URL) and the unrecorded disconnections."""
        for held in list(self._held.values()):
            if held.connection is None or self._held.get(held.ocpp_id) is not held:
                continue
            logger = ChargerLogger(log, {"charger": held.ocpp_id})
            connection = held.connection.model_copy(update={"queue_url": self.queue_url})
            try:
                await self._io(self.registry.register_connection, held.charger_id, connection)
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
                await self._io(self.registry.register_disconnection, charger_id, session_id, at)
            except Exception:
                log.exception("could not record a disconnection; retrying later", extra={"chargerId": charger_id})
                return False
            del self._unrecorded_disconnections[charger_id]
        log.info("storage is back; connections registered again", extra={"chargers": len(self._held)})
        return True

    def _release(self, held: Held, code: CloseCode, reason: str) -> None:
        held.session.close()
        self._background.spawn(held.websocket.close(code, reason), "close a replaced connection")

    def _session_for(self, command: Command) -> OcppSession | None:
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

    # -- the command queue ---------------------------------------------------------------

    async def _poll(self) -> None:
        backoff = 0.5
        while not self._stopping:
            try:
                messages = await self._io(self._poll_queue.receive, self.settings.gateway_queue_wait_s)
            except ClientError as exc:
                if not queue_is_gone(exc):
                    log.exception("could not receive commands; retrying", extra={"backoffS": backoff})
                    await asyncio.sleep(backoff)
                    continue
                # SQS lost the queue (a restarted server, a deletion by hand): without it
                # no command can reach this instance again, so it is created anew.
                log.warning("the instance queue is gone; creating it again", extra={"queueUrl": self.queue_url})
                try:
                    await self._create_queue()
                except Exception:
                    log.exception("could not create the instance queue; retrying", extra={"backoffS": backoff})
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake_poller.wait(), backoff)
                    backoff = min(backoff * 2, MAX_POLL_BACKOFF_S)
                continue
            except Exception:
                log.exception("could not receive commands; retrying", extra={"backoffS": backoff})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake_poller.wait(), backoff)
                backoff = min(backoff * 2, MAX_POLL_BACKOFF_S)
                continue
            backoff = 0.5
            for message in messages:
                self._runner.on_message(message)

    async def _fail_queued_commands(self) -> None:
        """Give commands still queued at shutdown their definitive outcome (no charger is held: offline)."""
        while True:
            try:
                messages = await self._io(self.queue.receive, 0)
            except Exception:
                log.exception("could not drain the instance queue")
                return
            if not messages:
                return
            for message in messages:
                self._runner.on_message(message)


def _too_many(connection: ServerConnection, wait_s: float) -> Response:
    response = connection.respond(HTTPStatus.TOO_MANY_REQUESTS, "Too many failed logins; try again later.\n")
    response.headers["Retry-After"] = str(max(1, math.ceil(wait_s)))
    return response


def _offered_subprotocols(headers: Headers) -> list[str]:
    offered: list[str] = []
    for value in headers.get_all("Sec-WebSocket-Protocol"):
        offered.extend(parse_subprotocol(value))
    return offered


def _peer(websocket: ServerConnection) -> str:
    address = websocket.remote_address
    return f"{address[0]}:{address[1]}" if address else "?"
