"""The home of an admitted charger's socket: how its messages reach its session.

picows calls ``on_ws_frame`` for every frame it parses. A data frame's message goes from
there straight to the session (``serve``), not through the compatible connection's
receive queue and an ``async for``: a message whose answer goes out at once is then
handled without a receive waiter, a task wake-up or a trip through the event loop (its
answer's send runs as an eager task). Everything else of
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

__all__ = ["CONNECTION_CLOSED", "MAX_FRAGMENTS", "MAX_QUEUE", "ChargerSocket", "MessageFailed", "TakeMessage", "finish"]

#: What a send, a receive or a close raises once the charger's socket is gone. Both
#: libraries' classes: sessions also run over websockets' connections in unit tests.
CONNECTION_CLOSED: tuple[type[Exception], ...] = (_PicowsConnectionClosed, _WsConnectionClosed)

#: Messages buffered per connection before reading pauses (websockets' default).
MAX_QUEUE = 16
#: Fragments one message may come in; an OCPP message needs one. More closes with 1009.
MAX_FRAGMENTS = 1024

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

    __slots__ = (
        "_broken",
        "_busy",
        "_direct",
        "_failed",
        "_fragments",
        "_max_size",
        "_opening",
        "_paused",
        "_take",
        "_waiting",
    )

    def __init__(self, server: Server, opening: Opening, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        self._opening: Opening | None = opening
        self._direct = kwargs.get("permessage_deflate") is None
        #: picows' convention: 0 (or None) is no limit.
        self._max_size: int = kwargs.get("max_message_size") or 0
        self._take: TakeMessage | None = None
        self._failed: MessageFailed | None = None
        #: Messages read while one is handled, or before ``serve``; ``None`` when there are none.
        self._waiting: deque[_Queued] | None = None
        #: Invalid text or a protocol error was met: the connection is being dropped, nothing more is taken.
        self._broken = False
        #: The message being handled, when its remainder did not finish at once.
        self._busy: asyncio.Task[None] | None = None
        #: A fragmented message so far: its type, its size so far, then its fragments' payloads.
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
        closed and the messages read before then are handled (as with picows' own
        connection, that includes any read after a close frame was sent or received).
        Cancelled, it cancels the message being handled and takes no more."""
        if not self._direct:
            async for message in ServerConnection.__aiter__(self):
                pending = take(message)
                if pending is not None:
                    await finish(pending, failed)
            return
        self._take, self._failed = take, failed
        try:
            self._drain()
            await self.wait_closed()
            while self._busy is not None:
                await asyncio.wait((self._busy,))
        finally:
            self._take = self._failed = self._waiting = None
            if self._busy is not None:  # cancelled (the gateway stops): its remainder goes too
                self._busy.cancel()
            if self._paused is not None:
                self._paused, paused = None, self._paused
                paused.resume_reading()

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
        message: _Queued
        if self._broken and msg_type in _DATA_FRAMES:
            return  # after invalid text or a protocol error, the connection is being dropped
        if msg_type is WSMsgType.TEXT and frame.fin and self._fragments is None and self._direct and not frame.rsv1:
            # Nearly every frame: a whole text message.
            try:
                message = frame.get_payload_as_utf8_text()
            except UnicodeDecodeError as exc:
                message = _InvalidText(transport, exc)
        elif not self._direct or msg_type not in _DATA_FRAMES or frame.rsv1:
            # Control frames, and what the compatible connection refuses or inflates.
            ServerConnection.on_ws_frame(self, transport, frame)
            return
        else:
            try:
                whole = self._assembled(msg_type, frame)
            except WSProtocolError:
                # picows closes the connection; the frames already read after this one
                # are dropped, not each refused (and logged) again.
                self._broken = True
                raise
            if whole is None:
                return
            message = _decoded(transport, *whole)
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

    def _assembled(self, msg_type: WSMsgType, frame: WSFrame) -> tuple[WSMsgType, bytes] | None:
        """A binary message, or a fragmented one once its last fragment is here; else ``None``.

        Fragments are counted and their size kept as they come (``[type, size, parts...]``):
        a message in many tiny fragments costs one pass, and at most ``MAX_FRAGMENTS``.
        """
        fragments = self._fragments
        if msg_type is WSMsgType.CONTINUATION:
            if fragments is None:
                raise WSProtocolError(WSCloseCode.PROTOCOL_ERROR, "unexpected continuation frame")
            part = frame.get_payload_as_bytes()
            fragments.append(part)
            fragments[1] += len(part)
            if self._max_size and fragments[1] > self._max_size:
                raise WSProtocolError(WSCloseCode.MESSAGE_TOO_BIG, "message too big")
            if len(fragments) - 2 > MAX_FRAGMENTS:
                raise WSProtocolError(WSCloseCode.MESSAGE_TOO_BIG, "message in too many fragments")
            if not frame.fin:
                return None
            self._fragments = None
            return fragments[0], b"".join(fragments[2:])
        if fragments is not None:
            raise WSProtocolError(WSCloseCode.PROTOCOL_ERROR, "expected continuation frame")
        if not frame.fin:
            first = frame.get_payload_as_bytes()
            self._fragments = [msg_type, len(first), first]
            return None
        return msg_type, frame.get_payload_as_bytes()

    def _run(self, message: _Queued) -> None:
        assert self._take is not None
        if isinstance(message, _InvalidText):
            self._drop(message)
            return
        try:
            pending = self._take(message)
        except Exception as exc:  # ``take`` is meant not to raise; if it does, the next message still comes
            self._report(exc)
            return
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

    def _drop(self, invalid: _InvalidText) -> None:
        """Invalid UTF-8, once the messages before it are handled: 1007, then the socket
        closed; later messages are not taken. (picows' compatible connection aborts; a
        close lets the 1007 frame out first, where an abort's reset can overtake it.)"""
        self._broken = True
        self._waiting = None
        invalid.transport.send_close(WSCloseCode.INVALID_TEXT, invalid.reason.encode())
        invalid.transport.disconnect()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._busy = None
        self._settle(task)
        self._drain()

    def _settle(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not isinstance(exc, CONNECTION_CLOSED):
            self._report(exc)

    def _report(self, exc: BaseException) -> None:
        if self._failed is not None:
            self._failed(exc)

    def _drain(self) -> None:
        while self._waiting and self._busy is None and self._take is not None:
            self._run(self._waiting.popleft())
        waiting = self._waiting
        if not waiting:
            self._waiting = None
        paused = self._paused
        if paused is not None and (not waiting or len(waiting) < MAX_QUEUE // 4):
            self._paused = None
            paused.resume_reading()


async def finish(pending: Coroutine[Any, Any, None], failed: MessageFailed) -> None:
    """Run a message's remainder to its end, awaited: its error goes to ``failed``, except
    the socket's closing, which is raised (it ends the connection's handling)."""
    try:
        await pending
    except CONNECTION_CLOSED:
        raise
    except Exception as exc:
        failed(exc)


class _InvalidText:
    """A text message that is not UTF-8, queued in its place among the messages."""

    __slots__ = ("reason", "transport")

    def __init__(self, transport: WSTransport, exc: UnicodeDecodeError) -> None:
        self.transport = transport
        self.reason = f"{exc.reason} at position {exc.start}"


#: What waits in a socket's queue: a message, or the invalid text that ends the connection.
_Queued = str | bytes | _InvalidText


def _decoded(transport: WSTransport, msg_type: WSMsgType, payload: bytes) -> _Queued:
    if msg_type is not WSMsgType.TEXT:
        return payload
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _InvalidText(transport, exc)
