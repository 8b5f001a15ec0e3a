"""The home of the gateway's lifecycle: the WebSocket server chargers connect to, started and stopped in order.

Usage, in-process (tests, the local runner)::

    settings = GatewaySettings()
    async with Gateway(settings, bootstrap(settings)) as gateway:
        ...  # chargers connect to ws://127.0.0.1:{gateway.port}/ocpp/{ocppId}

``python -m evreserve_gateway`` runs it until SIGTERM / SIGINT. The rooms it is made of:
``handshake.py`` (who gets a connection), ``connections.py`` (the connections held),
``commands/`` (the instance queue and the commands on it), ``bootstrap.py`` (what they
run on).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from types import TracebackType

from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from . import tls
from .background import Background
from .bootstrap import Dependencies
from .charger_socket import ChargerSocket
from .commands import CommandQueue, CommandRunner
from .commands.spool import SpoolWriter
from .connections import Connections
from .handshake import Handshake, is_health_check
from .leases import Leases
from .logs import quiet_libraries
from .metrics import GatewayMetrics
from .protocol import use_inline_validation
from .settings import GatewaySettings
from .tokens import TokenCache
from .traffic import MessageLog
from .transport import Opening, Server, serve

log = logging.getLogger("evreserve_gateway")

#: Pending TCP connections the kernel holds for accept (capped by net.core.somaxconn).
#: asyncio's 100 overflows in a connect storm, and a dropped SYN costs the charger a
#: 1 s (then 3 s, 7 s) retransmission before the gateway even sees it.
LISTEN_BACKLOG = 4096


#: Longest the stop waits to store the message log's last batches.
MESSAGE_LOG_FLUSH_LIMIT_S = 5.0
#: Longest the stop waits for each background loop (and the last commands) before giving up on it.
STOP_TASK_LIMIT_S = 15.0


async def _finish(task: asyncio.Task[None] | None, what: str, limit_s: float) -> None:
    if task is None:
        return
    done, _ = await asyncio.wait({task}, timeout=limit_s)
    if not done:
        log.warning("%s did not end in time; cancelled", what, extra={"limitS": limit_s})
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Gateway:
    """One gateway instance: holds charger connections and executes the commands queued for them."""

    def __init__(self, settings: GatewaySettings, deps: Dependencies) -> None:
        self.settings = settings
        self._io = deps.io
        self._auth = deps.auth
        #: Set once, when the stop begins: refuses handshakes, ends the poll and the watcher.
        self._stopping = asyncio.Event()
        self._background = Background()
        self.message_log = (
            MessageLog(
                deps.log_writer,
                flush_s=settings.gateway_message_log_flush_s,
                max_bytes=settings.gateway_message_log_max_bytes,
                instance_id=settings.instance_id,
            )
            if deps.log_writer is not None
            else None
        )
        self._log_task: asyncio.Task[None] | None = None
        self._queue = CommandQueue(settings, deps.queue, deps.poll_queue, deps.io, self._stopping)
        self._handshake = Handshake(
            settings,
            deps.registry,
            deps.io,
            deps.auth,
            deps.verify_password,
            self._stopping,
            chargers=lambda: self._connections.charger_count,
            commands_in_flight=lambda: self._runner.in_flight,
        )
        self._connections = Connections(
            settings,
            deps.registry,
            deps.reservations,
            deps.io,
            self._background,
            self._stopping,
            admission_of=lambda socket: self._handshake.admission(socket.opened()),
            queue_url=lambda: self._queue.url,
            queue=deps.queue,
            tokens=TokenCache(
                deps.access_ids,
                deps.accounts,
                deps.io,
                ttl_s=settings.gateway_access_id_cache_s,
                max_entries=settings.gateway_access_id_cache_entries,
            ),
            message_log=self.message_log,
        )
        self.metrics = GatewayMetrics(
            settings.instance_id, lambda: self._connections.charger_count, settings.gateway_metrics_interval_s
        )
        self._metrics_task: asyncio.Task[None] | None = None
        self._runner = CommandRunner(
            deps.ledger,
            deps.reservations,
            self._queue.redeliveries,
            deps.io,
            settings.instance_id,
            self._connections.session_for,
            keep_poison_messages=settings.command_dlq_url is not None,
            spool=deps.spool,
            control=self._connections.close_charger,
            on_completed=self.metrics.command,
        )
        self._spool_writer = (
            SpoolWriter(deps.spool, deps.ledger, deps.io, self._stopping) if deps.spool is not None else None
        )
        self._spool_task: asyncio.Task[None] | None = None
        self._leases = Leases(
            settings,
            deps.instances,
            deps.registry,
            deps.queue,
            deps.io,
            self._stopping,
            queue_url=lambda: self._queue.url,
            register_again=self._connections.register_again,
        )
        self._server: Server | None = None
        #: Security profile 3's listener (TLS with client certificates), when configured.
        self._mtls_server: Server | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._stopped: asyncio.Future[None] | None = None

    # -- public surface ---------------------------------------------------------------

    @property
    def instance_id(self) -> str:
        return self.settings.instance_id

    @property
    def queue_url(self) -> str:
        return self._queue.url

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
        return self._connections.holds(ocpp_id)

    @property
    def charger_count(self) -> int:
        return self._connections.charger_count

    @property
    def storage_ok(self) -> bool:
        """False while DynamoDB is failing and until the held connections are registered again."""
        return self._connections.storage_ok

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        quiet_libraries()
        use_inline_validation()
        await self._queue.create()
        try:
            await self._leases.renew()
        except Exception:
            # DynamoDB down at start: the instance serves anyway; the next beat renews.
            log.exception("could not write this instance's lease; retrying every beat")
        if self.message_log is not None:
            try:
                # Started before the server, not on the first batch: its start-up (a spawned
                # interpreter) is not paid mid-traffic, and /health answers once it is ready.
                await self.message_log.writer.start()
            except Exception:
                log.exception("the message log's writer did not start; it is retried with the first batch")
        s = self.settings
        self._server = await self._listen(s.gateway_port, tls.listener_context(s))
        if s.gateway_mtls_port is not None:
            self._mtls_server = await self._listen(s.gateway_mtls_port, tls.client_certificate_context(s))
        loop = asyncio.get_running_loop()
        self._poller = loop.create_task(self._queue.poll(self._runner.on_message, self._connections.queue_moved))
        self._watcher = loop.create_task(self._connections.watch_storage())
        self._heartbeat = loop.create_task(self._leases.run())
        if self._spool_writer is not None:
            self._spool_task = loop.create_task(self._spool_writer.run())
        if self.message_log is not None:
            self._log_task = loop.create_task(self.message_log.run(self._stopping))
        self._metrics_task = loop.create_task(self.metrics.run(self._stopping))
        self._stopped = loop.create_future()
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
        if self._stopping.is_set():
            await self.wait_stopped()
            return
        self._stopping.set()
        log.info("gateway stopping", extra={"instanceId": self.instance_id, "chargers": self.charger_count})
        servers = [server for server in (self._server, self._mtls_server) if server is not None]
        try:
            for server in servers:
                # Refuses new connections at once; open ones keep running to finish their commands.
                server.server.close()
            if not await self._runner.join(limit_s=self.settings.gateway_drain_timeout_s):
                log.warning("closing chargers with commands still in flight; they end offline")
            self._connections.close_sessions()
            for server in servers:
                server.close(close_connections=True, code=CloseCode.SERVICE_RESTART, reason="gateway restarting")
                try:
                    # websockets closes each connection within its close timeout, then aborts it;
                    # a handler that still has not ended must not hold the drain forever.
                    await asyncio.wait_for(server.wait_closed(), STOP_TASK_LIMIT_S)
                except TimeoutError:
                    log.warning("connections still open at the end of the drain; left to the process exit")
            if self._poller is not None:
                await self._queue.wake_poll()
            # Each loop ends at its next turn once stopping is set; bounded all the same, so
            # that a call stuck on a frozen dependency cannot hold the drain (and the task's
            # stop timeout) forever.
            for task, what in (
                (self._poller, "the queue poll"),
                (self._watcher, "the storage watcher"),
                (self._heartbeat, "the lease heartbeat"),
                (self._spool_task, "the spool writer"),
                (self._log_task, "the message log writer"),
                (self._metrics_task, "the metrics reporter"),
            ):
                await _finish(task, what, STOP_TASK_LIMIT_S)
            try:
                await asyncio.wait_for(self._queue.drain(self._runner.on_message), STOP_TASK_LIMIT_S)
            except TimeoutError:
                log.warning("the queue was not drained in time; what is left is redelivered or expires")
            if not await self._runner.join(limit_s=STOP_TASK_LIMIT_S):
                log.warning("commands still running at the end of the drain; their outcomes are not awaited")
            unstored = self._runner.abandon_rewrites()
            if unstored:
                # Storage and the spool both failed them: the API's waiters record timeouts.
                log.error("outcomes left unstored at shutdown", extra={"count": unstored})
            if self.message_log is not None:
                try:
                    # After the sockets closed: nothing more is logged. Bounded, as storage may be down.
                    await asyncio.wait_for(self.message_log.flush(), MESSAGE_LOG_FLUSH_LIMIT_S)
                except TimeoutError:
                    log.warning(
                        "the message log was not stored in time; dropped",
                        extra={"bufferedBytes": self.message_log.buffered_bytes},
                    )
                self.message_log.report()
            await self._queue.remove()
            await self._leases.release()
            await self._background.join(limit_s=5.0)
        finally:
            self._io.shutdown()
            self._auth.shutdown()
            if self.message_log is not None:
                self.message_log.writer.shutdown()
            if self._stopped is not None and not self._stopped.done():
                self._stopped.set_result(None)
            log.info("gateway stopped", extra={"instanceId": self.instance_id})

    async def _listen(self, port: int, context: ssl.SSLContext | None) -> Server:
        s = self.settings
        return await serve(
            self._handle,
            s.gateway_host,
            port,
            process_request=self._process_request,
            select_subprotocol=self._handshake.select_subprotocol,
            ping_interval=s.gateway_ping_interval_s,
            ping_timeout=s.gateway_ping_timeout_s,
            max_size=s.gateway_max_frame_bytes,
            compression=s.gateway_compression,
            ssl_context=context,
            # Past our own handshake budget the charger is answered 503; this timeout
            # only catches what never reached it (a peer that sends no request).
            open_timeout=2 * s.gateway_handshake_timeout_s,
            backlog=LISTEN_BACKLOG,
        )

    async def _process_request(self, connection: Opening, request: Request) -> Response | None:
        response = await self._handshake.process_request(connection, request)
        if response is not None and response.status_code >= 400 and not is_health_check(request):
            self.metrics.refused(response.status_code)
        return response

    async def _handle(self, websocket: ChargerSocket) -> None:
        self.metrics.connected()
        try:
            await self._connections.handle(websocket)
        finally:
            self.metrics.disconnected()

    @property
    def mtls_port(self) -> int | None:
        """The port of the security profile 3 listener, if any."""
        if self._mtls_server is None:
            return None
        port: int = self._mtls_server.sockets[0].getsockname()[1]
        return port
