"""The home of an admitted charger's socket: how its messages reach its session.

picows calls ``on_ws_frame`` for every frame it parses. A data frame's message goes from
there straight to the session (``serve``), not through the compatible connection's
receive queue and an ``async for``: a message whose answer goes out at once is then
handled without a future, a task wake-up or a coroutine of its own. Everything else of
the connection (sending, closing, keepalive pings, control frames) is picows'
websockets-compatible connection's.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from picows import WSCloseCode, WSFrame, WSMsgType, WSProtocolError, WSTransport
from picows.websockets.asyncio.connection import ServerConnection
from picows.websockets.asyncio.server import Server
from picows.websockets.exceptions import ConnectionClosed as _PicowsConnectionClosed
from websockets.exceptions import ConnectionClosed as _WsConnectionClosed

if TYPE_CHECKING:
    from .transport import Opening

__all__ = ["CONNECTION_CLOSED", "MAX_QUEUE", "ChargerSocket", "MessageFailed", "TakeMessage"]

#: What a send, a receive or a close raises once the charger's socket is gone. Both
#: libraries' classes: sessions also run over websockets' connections in unit tests.
CONNECTION_CLOSED: tuple[type[Exception], ...] = (_PicowsConnectionClosed, _WsConnectionClosed)

#: Messages buffered per connection before reading pauses (websockets' default).
MAX_QUEUE = 16

#: What a connection's messages go to: run synchronously, it hands back what is left to
#: run (usually the answer's send) or ``None``.
TakeMessage = Callable[[str | bytes], Coroutine[Any, Any, None] | None]
#: What an error raised by that remainder goes to (a closed connection's is not one).
MessageFailed = Callable[[BaseException], None]

_DATA_FRAMES = (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION)


class ChargerSocket(ServerConnection):
    """An admitted charger's WebSocket: picows' websockets-compatible connection, how it
    was opened, and its messages' way to the session (``serve``).

    One message is handled at a time, in order: while one's remainder waits (a send on
    a full buffer), later ones queue here, and reading pauses once ``MAX_QUEUE`` of
    them wait. With permessage-deflate (off by default) messages take the compatible
    connection's own receive path, which inflates them.
    """

    __slots__ = ("_busy", "_direct", "_failed", "_fragments", "_max_size", "_opening", "_paused", "_take", "_waiting")

    def __init__(self, server: Server, opening: Opening, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        self._opening: Opening | None = opening
        self._direct = kwargs.get("permessage_deflate") is None
        self._max_size: int = kwargs["max_message_size"]
        self._take: TakeMessage | None = None
        self._failed: MessageFailed | None = None
        #: Messages read while one is handled, or before ``serve``; ``None`` when there are none.
        self._waiting: deque[str | bytes] | None = None
        #: The message being handled, when its remainder did not finish at once.
        self._busy: asyncio.Task[None] | None = None
        #: A fragmented message so far: its type, then its fragments' payloads.
        self._fragments: list[Any] | None = None
        #: The transport whose reading is paused (too many messages waiting), else ``None``.
        self._paused: Any = None

    def opened(self) -> Opening | None:
        """How the socket was opened, once: the connection handler takes it (to find its
        admission), and the opening request's memory goes with it."""
        opening, self._opening = self._opening, None
        return opening

    async def serve(self, take: TakeMessage, failed: MessageFailed) -> None:
        """Hand the charger's messages to ``take``, in order, until the connection has
        closed and the messages read before the close are handled."""
        if not self._direct:
            async for message in ServerConnection.__aiter__(self):
                pending = take(message)
                if pending is not None:
                    try:
                        await pending
                    except CONNECTION_CLOSED:
                        raise
                    except Exception as exc:
                        failed(exc)
            return
        self._take, self._failed = take, failed
        try:
            self._drain()
            await self.wait_closed()
            while self._busy is not None:
                await asyncio.wait((self._busy,))
        finally:
            self._take = self._failed = self._waiting = None

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        if self._direct:
            raise TypeError("a charger socket's messages go to serve(), not to iteration")
        return ServerConnection.__aiter__(self)

    async def recv(self, decode: bool | None = None) -> str | bytes:
        if self._direct:
            raise TypeError("a charger socket's messages go to serve(), not to recv()")
        return await ServerConnection.recv(self, decode)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type is WSMsgType.TEXT and frame.fin and self._fragments is None and self._direct and not frame.rsv1:
            # Nearly every frame: a whole text message.
            try:
                message: str | bytes = frame.get_payload_as_utf8_text()
            except UnicodeDecodeError as exc:
                raise _invalid_text(exc) from exc
        elif not self._direct or msg_type not in _DATA_FRAMES or frame.rsv1:
            # Control frames, and what the compatible connection refuses or inflates.
            ServerConnection.on_ws_frame(self, transport, frame)
            return
        else:
            assembled = self._assembled(msg_type, frame)
            if assembled is None:
                return
            message = assembled
        if self._busy is None and self._take is not None and not self._waiting:
            self._run(message)
            return
        waiting = self._waiting
        if waiting is None:
            waiting = self._waiting = deque()
        waiting.append(message)
        if len(waiting) >= MAX_QUEUE and self._paused is None:
            self._paused = transport.underlying_transport
            self._paused.pause_reading()

    def _assembled(self, msg_type: WSMsgType, frame: WSFrame) -> str | bytes | None:
        """A binary message, or a fragmented one once its last fragment is here; else ``None``."""
        fragments = self._fragments
        if msg_type is WSMsgType.CONTINUATION:
            if fragments is None:
                raise WSProtocolError(WSCloseCode.PROTOCOL_ERROR, "unexpected continuation frame")
            fragments.append(frame.get_payload_as_bytes())
            if sum(len(part) for part in fragments[1:]) > self._max_size:
                raise WSProtocolError(WSCloseCode.MESSAGE_TOO_BIG, "message too big")
            if not frame.fin:
                return None
            self._fragments = None
            return _message(fragments[0], b"".join(fragments[1:]))
        if fragments is not None:
            raise WSProtocolError(WSCloseCode.PROTOCOL_ERROR, "expected continuation frame")
        if not frame.fin:
            self._fragments = [msg_type, frame.get_payload_as_bytes()]
            return None
        return _message(msg_type, frame.get_payload_as_bytes())

    def _run(self, message: str | bytes) -> None:
        assert self._take is not None
        pending = self._take(message)
        if pending is None:
            return
        # Run eagerly: a remainder that does not wait (an answer sent at once) is done
        # here, with no trip through the event loop.
        task = asyncio.Task(pending, loop=asyncio.get_running_loop(), eager_start=True)
        if task.done():
            self._settle(task)
        else:
            self._busy = task
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._busy = None
        self._settle(task)
        self._drain()

    def _settle(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not isinstance(exc, CONNECTION_CLOSED) and self._failed is not None:
            self._failed(exc)

    def _drain(self) -> None:
        waiting = self._waiting
        while waiting and self._busy is None and self._take is not None:
            self._run(waiting.popleft())
        if not waiting:
            self._waiting = None
        paused = self._paused
        if paused is not None and (not waiting or len(waiting) < MAX_QUEUE // 4):
            self._paused = None
            paused.resume_reading()


def _message(msg_type: WSMsgType, payload: bytes) -> str | bytes:
    if msg_type is not WSMsgType.TEXT:
        return payload
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid_text(exc) from exc


def _invalid_text(exc: UnicodeDecodeError) -> WSProtocolError:
    return WSProtocolError(WSCloseCode.INVALID_TEXT, f"{exc.reason} at position {exc.start}")
