"""The home of the chargers' WebSocket transport: picows' compiled frame path behind our own opening handshake.

Why picows: under load, websockets' pure-Python frame path (parsing, the message
assembler, the per-frame send context) was ~45% of the gateway's time, more than
everything OCPP costs it. picows parses and writes frames in Cython, and its
websockets-compatible connection (``picows.websockets``: ``send``, ``close``,
``close_code``) keeps the API the sessions were written against; messages reach the
sessions from its frame callback (``charger_socket``). Side by
side (benchmarks/gateway_throughput.py, 1,000 chargers, heartbeat), an echo server on it
costs ~0.4x the CPU per message of the same echo on websockets.

Why the handshake is ours: picows answers the opening handshake from a synchronous
callback, and a charger's admission is asynchronous (a registry read, a password check
on threads). So the HTTP request is read here with websockets' sans-I/O parser (its
limits, its 4xx answers to malformed requests), decided by ``process_request``, checked
as an upgrade by websockets' own rules, and only then handed to a picows protocol on the
same socket (a request head built from the accepted one, then the bytes sent after it),
which answers 101 with the agreed subprotocol.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import picows
from picows.picows import WSProtocol  # type: ignore[attr-defined]  # not in picows' stubs
from picows.websockets.asyncio.negotiation import configure_permessage_deflate
from picows.websockets.asyncio.server import Server
from picows.websockets.compat import Request as OpenRequest
from picows.websockets.compat import Response as OpenResponse
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from .charger_socket import MAX_QUEUE, ChargerSocket

__all__ = ["Opening", "Server", "serve"]

#: The longest opening request read (websockets' own parser caps lines and headers too).
MAX_REQUEST_BYTES = 16 * 1024
#: Bytes a client may send after its request, before the 101 (early frames), kept for picows.
MAX_EARLY_BYTES = 64 * 1024
#: Seconds a connection may take to close cleanly before it is dropped (websockets' default).
CLOSE_TIMEOUT_S = 10.0
#: Bytes buffered for writing before a send waits (websockets' default).
WRITE_LIMIT = 32 * 1024
#: Each connection's first read buffer (picows' least). It doubles when a frame needs more;
#: most OCPP frames are well under 1 KB, and at 10,000 idle chargers picows' default
#: (16 KiB) would be most of the gateway's memory.
READ_BUFFER_BYTES = 2 * 1024

_log = logging.getLogger("evreserve_gateway.transport")


class Opening:
    """A connection during its opening handshake: what ``process_request`` is given.

    It has what the handshake needs of websockets' ``ServerConnection`` at that stage:
    ``request``, ``remote_address``, the asyncio ``transport`` (for the TLS client
    certificate) and ``respond``.
    """

    __slots__ = ("__weakref__", "_protocol", "remote_address", "request", "transport")

    def __init__(self, protocol: ServerProtocol, transport: asyncio.Transport, request: Request) -> None:
        self._protocol: ServerProtocol | None = protocol
        self.transport: asyncio.Transport | None = transport
        self.request = request
        self.remote_address: Any = transport.get_extra_info("peername")

    def respond(self, status: int, text: str) -> Response:
        """A plain-text refusal, as websockets builds it (``Connection: close``, no Server header)."""
        assert self._protocol is not None, "answered after the decision"
        return self._protocol.reject(status, text)

    def decided(self) -> None:
        """The socket is admitted: the parser and the transport are no longer this object's to hold."""
        self._protocol = None
        self.transport = None


class _CopyingWritelines:
    """The loop's transport as picows sees it, with a ``writelines`` that copies.

    picows writes a frame over 8 KiB as ``writelines([a view of its reused header
    buffer, payload])``. asyncio's selector transport (3.12) and uvloop's both queue
    such views uncopied when the socket is full, so the next frame's header overwrote
    the queued one and a slow reader got corrupt frames. The hot path (``write``, the
    buffer size, the socket) is the transport's own bound methods; the rest is forwarded.
    """

    __slots__ = ("_transport", "get_extra_info", "get_write_buffer_size", "write")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.write = transport.write
        self.get_write_buffer_size = transport.get_write_buffer_size
        self.get_extra_info = transport.get_extra_info

    def writelines(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        self._transport.write(b"".join(chunks))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


ProcessRequest = Callable[[Opening, Request], Awaitable[Response | None]]
SelectSubprotocol = Callable[[Opening, Sequence[Subprotocol]], Subprotocol | None]


@dataclass(frozen=True, slots=True)
class _Options:
    server: Server
    process_request: ProcessRequest
    select_subprotocol: SelectSubprotocol
    ping_interval: float | None
    ping_timeout: float | None
    max_size: int
    compression: bool
    open_timeout: float


def _deflate_offered(request: Request) -> bool:
    """Whether the charger offers permessage-deflate in a form the answer without parameters honours.

    The answer carries no parameters (picows' deflate speaks the defaults), so an offer
    that restricts the server's window (``server_max_window_bits``) or its context
    (``server_no_context_takeover``) is declined rather than ignored (RFC 7692, 7.1).
    """
    for value in request.headers.get_all("Sec-WebSocket-Extensions"):
        for offer in value.split(","):
            name, *params = (part.strip() for part in offer.split(";"))
            if name != "permessage-deflate":
                continue
            if not any(p.split("=", 1)[0].strip().startswith("server_") for p in params):
                return True
    return False


class _OpeningProtocol(asyncio.Protocol):
    """Reads one HTTP request, has it decided, then refuses it or hands the socket to picows."""

    def __init__(self, options: _Options) -> None:
        self._options = options
        # websockets' logger, not ours: at DEBUG it writes every request header, the
        # charger's Authorization among them, and the gateway keeps it at WARNING.
        self._parser = ServerProtocol(max_size=options.max_size, logger=_WEBSOCKETS_LOG)
        self._transport: asyncio.Transport | None = None
        self._received = bytearray()
        self._deciding: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        #: Where the request ends in ``_received``, once it is whole.
        self._request_end = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; they have its methods.
        self._transport = cast(asyncio.Transport, transport)
        self._timer = asyncio.get_running_loop().call_later(self._options.open_timeout, self._too_slow)

    def data_received(self, data: bytes) -> None:
        self._received += data
        if self._deciding is not None:
            # Bytes after the request (frames sent before the 101): kept for picows, bounded.
            # Reading goes on during the decision so that a peer that leaves is seen leaving.
            if len(self._received) - self._request_end > MAX_EARLY_BYTES:
                self._abort()
            return
        end = self._received.find(b"\r\n\r\n")
        if (end + 4 if end >= 0 else len(self._received)) > MAX_REQUEST_BYTES:
            self._refuse(self._parser.reject(431, "Request header fields too large.\n"))
            return
        if end >= 0:
            self._request_end = end + 4
        self._parser.receive_data(data)
        self._after_parse()

    def eof_received(self) -> bool | None:
        if self._deciding is None:
            self._parser.receive_eof()
            self._after_parse()
        # Falsy: the transport closes, and a charger that closed before its 101 gets no
        # connection (``_decide`` sees the transport closing).
        return None

    def _after_parse(self) -> None:
        transport = self._transport
        assert transport is not None
        events = self._parser.events_received()
        if events and isinstance(events[0], Request):
            self._deciding = asyncio.get_running_loop().create_task(self._decide(transport, events[0]))
            return
        written = self._parser.data_to_send()
        if written or self._parser.close_expected():
            # A malformed request: websockets' parser answered it (400, 414, 431) or gave up.
            self._write_and_close(written)

    async def _decide(self, transport: asyncio.Transport, request: Request) -> None:
        options = self._options
        opening = Opening(self._parser, transport, request)
        try:
            response = await options.process_request(opening, request)
            if response is None:

                def choose(offered: Sequence[Subprotocol]) -> Subprotocol | None:
                    return options.select_subprotocol(opening, offered)

                # As websockets binds its own hook: an attribute that shadows the method.
                setattr(self._parser, "select_subprotocol", choose)  # noqa: B010
                # websockets' checks of the upgrade (method, headers, key, version) and its
                # subprotocol choice; picows checks the same once more and answers 101.
                response = self._parser.accept(request)
        except asyncio.CancelledError:
            self._close()
            raise
        except Exception:
            _log.exception("opening handshake failed")
            response = self._parser.reject(500, "Failed to open a WebSocket connection.\n")
        if self._timer is not None:
            self._timer.cancel()
        if transport.is_closing():
            return  # the charger left (or sent too much) while it was decided
        if response.status_code == 101 and not options.server.is_serving():
            # The gateway began to stop while this charger was admitted: as websockets did,
            # a 503 rather than a connection the stop would no longer close.
            response = self._parser.reject(503, "Server is shutting down.\n")
        if response.status_code != 101:
            self._refuse(response)
            return
        try:
            self._hand_over(transport, opening, request, response)
        except Exception:
            _log.exception("could not hand an admitted connection over")
            self._abort()
            return
        # Nothing of the opening is needed past this point, should anything still hold this object.
        self._deciding = None

    def _hand_over(self, transport: asyncio.Transport, opening: Opening, request: Request, accepted: Response) -> None:
        options = self._options
        headers = {}
        subprotocol = accepted.headers.get("Sec-WebSocket-Protocol")
        if subprotocol is not None:
            headers["Sec-WebSocket-Protocol"] = subprotocol
        if options.compression and _deflate_offered(request):
            headers["Sec-WebSocket-Extensions"] = "permessage-deflate"
        upgrade = picows.WSUpgradeResponse.create_101_response(headers)
        response = OpenResponse.from_picows(upgrade)
        make_socket = partial(
            ChargerSocket,
            options.server,
            opening,
            response=response,
            subprotocol=subprotocol,
            permessage_deflate=configure_permessage_deflate(response, "deflate" if options.compression else None),
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_timeout,
            close_timeout=CLOSE_TIMEOUT_S,
            max_queue=MAX_QUEUE,
            write_limit=WRITE_LIMIT,
            max_message_size=options.max_size,
            max_frame_size=options.max_size,
            logger=_log,
        )
        opening.decided()
        protocol = WSProtocol(
            None,
            None,
            False,
            # The head below, as picows parsed it: no second copy of the charger's headers.
            lambda parsed: picows.WSUpgradeResponseWithListener(
                upgrade, make_socket(request=OpenRequest.from_picows(parsed))
            ),
            _PICOWS_LOG,
            True,  # disconnect on an exception in the listener (a protocol error: 1002 / 1009)
            options.open_timeout,
            False,  # keepalive pings: the connection's own (ping_interval)
            20.0,
            20.0,
            picows.WSAutoPingStrategy.PING_WHEN_IDLE,
            True,  # answer pings
            options.max_size,
            None,
            READ_BUFFER_BYTES,
        )
        transport.set_protocol(protocol)
        protocol.connection_made(_CopyingWritelines(transport))
        # picows checks the upgrade once more, more strictly than websockets (``Connection``
        # must be exactly "upgrade"): it is given a head of its own, built from the request
        # websockets accepted, then the bytes the charger sent after it.
        head = (
            f"GET {request.path} HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {request.headers['Sec-WebSocket-Key']}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode("ascii", "surrogateescape")
        received = head + bytes(self._received[self._request_end :])
        self._received.clear()
        while received:
            buffer = protocol.get_buffer(len(received))
            size = min(len(buffer), len(received))
            buffer[:size] = received[:size]
            protocol.buffer_updated(size)
            received = received[size:]

    def _refuse(self, response: Response) -> None:
        self._parser.send_response(response)
        self._write_and_close(self._parser.data_to_send())

    def _write_and_close(self, chunks: list[bytes]) -> None:
        transport = self._transport
        assert transport is not None
        for chunk in chunks:
            if chunk:
                transport.write(chunk)
        self._close()

    def _close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def _abort(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None:
            self._transport.abort()

    def _too_slow(self) -> None:
        # The whole opening (request and decision) over its time: dropped without an answer,
        # as websockets' open timeout did; process_request answers 503 well before this.
        if self._deciding is not None:
            self._deciding.cancel()
        self._abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        # A decision in progress runs to its end (a failed login still counts); its answer
        # goes nowhere.


#: An adapter, not the logger: given a Logger, picows builds a child Logger object for
#: every connection, memory that 10,000 idle chargers would pay for nothing.
_PICOWS_LOG = logging.LoggerAdapter(logging.getLogger("picows.server"))
_WEBSOCKETS_LOG = logging.getLogger("websockets.server")


async def serve(
    handler: Callable[[ChargerSocket], Awaitable[None]],
    host: str,
    port: int,
    *,
    process_request: ProcessRequest,
    select_subprotocol: SelectSubprotocol,
    ping_interval: float | None,
    ping_timeout: float | None,
    max_size: int,
    compression: bool,
    ssl_context: ssl.SSLContext | None,
    open_timeout: float,
    backlog: int,
) -> Server:
    """Listen for chargers; ``handler`` runs per admitted connection, as websockets' ``serve`` runs it."""
    server = Server(handler, logger=_log)
    options = _Options(
        server=server,
        process_request=process_request,
        select_subprotocol=select_subprotocol,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        max_size=max_size,
        compression=compression,
        open_timeout=open_timeout,
    )
    loop = asyncio.get_running_loop()
    # A TLS handshake that stalls is bounded like the rest of the opening (as websockets did).
    listening = await loop.create_server(
        lambda: _OpeningProtocol(options),
        host,
        port,
        ssl=ssl_context,
        backlog=backlog,
        ssl_handshake_timeout=open_timeout if ssl_context else None,
        ssl_shutdown_timeout=CLOSE_TIMEOUT_S if ssl_context else None,
    )
    server.wrap(listening)
    return server
