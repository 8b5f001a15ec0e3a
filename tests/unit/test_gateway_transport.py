"""The gateway's transport: our opening handshake in front of picows' frames, over real sockets on 127.0.0.1.

Every gateway integration test connects through it too; these are the cases only the
transport decides: what is answered before ``process_request`` runs, bytes that arrive
with the request, the open timeout, permessage-deflate, and both event loops.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import struct
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import pytest
import uvloop
from websockets.asyncio.client import connect
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from evreserve_gateway.charger_socket import CONNECTION_CLOSED, MAX_FRAGMENTS, ChargerSocket
from evreserve_gateway.transport import MAX_REQUEST_BYTES, Opening, Server, _deflate_offered, serve

LOOPS: dict[str, Callable[[Awaitable[Any]], Any]] = {"asyncio": asyncio.run, "uvloop": uvloop.run}


async def _echo(socket_: ChargerSocket) -> None:
    def take(message: str | bytes) -> Coroutine[Any, Any, None]:
        return socket_.send(message)  # type: ignore[no-any-return]

    def failed(exc: BaseException) -> None:
        raise AssertionError("an echo failed") from exc

    with contextlib.suppress(CONNECTION_CLOSED):  # with permessage-deflate, a dropped peer raises
        await socket_.serve(take, failed)


async def _admit_all(_opening: Opening, _request: Request) -> Response | None:
    return None


def _ocpp16(_opening: Opening, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    return Subprotocol("ocpp1.6") if "ocpp1.6" in offered else None


async def _serve(
    process_request: Callable[[Opening, Request], Awaitable[Response | None]] = _admit_all,
    *,
    compression: bool = False,
    open_timeout: float = 5.0,
    handler: Callable[[ChargerSocket], Awaitable[None]] = _echo,
) -> tuple[Server, int]:
    server = await serve(
        handler,
        "127.0.0.1",
        0,
        process_request=process_request,
        select_subprotocol=_ocpp16,
        ping_interval=None,
        ping_timeout=None,
        max_size=64 * 1024,
        compression=compression,
        ssl_context=None,
        open_timeout=open_timeout,
        backlog=16,
    )
    return server, server.sockets[0].getsockname()[1]


async def _stop(server: Server) -> None:
    server.close()
    await asyncio.wait_for(server.wait_closed(), 10)


async def _raw_exchange(port: int, data: bytes, read_for_s: float = 2.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    received = b""
    try:
        async with asyncio.timeout(read_for_s):
            while chunk := await reader.read(65536):
                received += chunk
    except TimeoutError:
        pass
    writer.close()
    return received


def _upgrade_request(path: str = "/ocpp/CP-1", extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n{extra}\r\n"
    ).encode()


def _masked_text(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    if len(payload) < 126:
        return struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked
    assert len(payload) < 65536
    return struct.pack("!BBH", 0x81, 0x80 | 126, len(payload)) + mask + masked


def _server_texts(data: bytes) -> list[bytes]:
    """The server's (unmasked) text frames in ``data``; fails on anything else."""
    texts = []
    while data:
        assert data[0] == 0x81, f"not a final text frame: {data[:4]!r}"
        size, start = data[1], 2
        assert size != 127, "no answer here is over 64 KiB"
        if size == 126:
            size, start = struct.unpack("!H", data[2:4])[0], 4
        texts.append(data[start : start + size])
        data = data[start + size :]
    return texts


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_an_admitted_charger_gets_its_subprotocol_and_its_frames_answered(loop: str) -> None:
    async def scenario() -> tuple[str | None, list[str]]:
        server, port = await _serve()
        try:
            async with connect(f"ws://127.0.0.1:{port}/ocpp/CP-1", subprotocols=[Subprotocol("ocpp1.6")]) as ws:
                answers = []
                for n in range(3):
                    await ws.send(f'[2,"{n}","Heartbeat",{{}}]')
                    answers.append(str(await ws.recv()))
                return ws.subprotocol, answers
        finally:
            await _stop(server)

    subprotocol, answers = LOOPS[loop](scenario())
    assert subprotocol == "ocpp1.6"
    assert answers == [f'[2,"{n}","Heartbeat",{{}}]' for n in range(3)]


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_a_refusal_is_answered_before_any_upgrade_and_the_socket_closed(loop: str) -> None:
    seen: list[tuple[str, Any]] = []

    async def refuse(opening: Opening, request: Request) -> Response | None:
        seen.append((request.path, opening.remote_address[0]))
        response = opening.respond(401, "Invalid credentials.\n")
        response.headers["WWW-Authenticate"] = 'Basic realm="ocpp"'
        return response

    async def scenario() -> int:
        server, port = await _serve(refuse)
        try:
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"ws://127.0.0.1:{port}/ocpp/CP-2"):
                    pass
            return refused.value.response.status_code
        finally:
            await _stop(server)

    assert LOOPS[loop](scenario()) == 401
    assert seen == [("/ocpp/CP-2", "127.0.0.1")]


def test_frames_sent_with_the_request_reach_the_connection() -> None:
    """A client that writes its first frame in the same packet as the request is not cut short."""

    async def scenario() -> bytes:
        server, port = await _serve()
        try:
            return await _raw_exchange(port, _upgrade_request() + _masked_text("early"), read_for_s=1.0)
        finally:
            await _stop(server)

    answer = asyncio.run(scenario())
    head, _, frames = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    assert b"Sec-WebSocket-Protocol: ocpp1.6" in head
    # The echo of "early": an unmasked server frame.
    assert frames.startswith(b"\x81\x05early")


def test_the_request_is_read_whole_before_it_is_decided() -> None:
    """A request that arrives in pieces is decided once, on the whole of it."""
    decided: list[str] = []

    async def count(_opening: Opening, request: Request) -> Response | None:
        decided.append(request.headers["X-Part"])
        return None

    async def scenario() -> bytes:
        server, port = await _serve(count)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            request = _upgrade_request(extra="X-Part: whole\r\n")
            for offset in range(0, len(request), 7):
                writer.write(request[offset : offset + 7])
                await writer.drain()
                await asyncio.sleep(0.001)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            writer.close()
            return head
        finally:
            await _stop(server)

    assert asyncio.run(scenario()).startswith(b"HTTP/1.1 101")
    assert decided == ["whole"]


async def _exchange_undecided(data: bytes) -> tuple[bytes, list[str]]:
    """What a server answers ``data`` with, and the requests its process_request saw."""
    decided: list[str] = []

    async def count(_opening: Opening, request: Request) -> Response | None:
        decided.append(request.path)
        return None

    server, port = await _serve(count)
    try:
        return await _raw_exchange(port, data), decided
    finally:
        await _stop(server)


def test_an_oversized_request_is_refused_with_431_without_being_decided() -> None:
    filler = "".join(f"X-Filler-{n}: {'a' * 200}\r\n" for n in range(MAX_REQUEST_BYTES // 200 + 2))
    answer, decided = asyncio.run(_exchange_undecided(_upgrade_request(extra=filler)))
    assert answer.startswith(b"HTTP/1.1 431"), answer[:80]
    assert decided == []


def test_a_request_that_is_not_http_is_dropped_without_being_decided() -> None:
    answer, decided = asyncio.run(_exchange_undecided(b"\x16\x03\x01 not http at all\r\n\r\n"))
    assert not answer.startswith(b"HTTP/1.1 101")
    assert decided == []


def test_a_plain_http_get_is_answered_by_process_request_and_a_non_upgrade_refused() -> None:
    """Health checks are plain GETs (process_request answers them); a GET it admits is no upgrade: 426."""

    async def health_only(opening: Opening, request: Request) -> Response | None:
        if request.path == "/health":
            return opening.respond(200, '{"status": "ok"}\n')
        return None

    async def scenario() -> tuple[bytes, bytes]:
        server, port = await _serve(health_only)
        try:
            health = await _raw_exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            other = await _raw_exchange(port, b"GET /ocpp/CP-1 HTTP/1.1\r\nHost: x\r\n\r\n")
            return health, other
        finally:
            await _stop(server)

    health, other = asyncio.run(scenario())
    assert health.startswith(b"HTTP/1.1 200") and health.endswith(b'{"status": "ok"}\n')
    assert other.startswith(b"HTTP/1.1 426"), other[:80]


def test_a_peer_that_never_sends_its_request_is_dropped_after_the_open_timeout() -> None:
    async def scenario() -> float:
        server, port = await _serve(open_timeout=0.3)
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            return loop.time() - started
        finally:
            await _stop(server)

    assert 0.25 <= asyncio.run(scenario()) < 3


def test_a_decision_still_running_at_the_open_timeout_is_cancelled() -> None:
    cancelled = asyncio.Event()

    async def slow(_opening: Opening, _request: Request) -> Response | None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return None

    async def scenario() -> bool:
        server, port = await _serve(slow, open_timeout=0.3)
        try:
            answer = await _raw_exchange(port, _upgrade_request(), read_for_s=3)
            assert answer == b""
            await asyncio.wait_for(cancelled.wait(), 3)
            return cancelled.is_set()
        finally:
            await _stop(server)

    assert asyncio.run(scenario())


def test_compression_is_agreed_only_when_on_and_offered_without_server_restrictions() -> None:
    async def scenario() -> tuple[str | None, str | None, str]:
        server, port = await _serve(compression=True)
        plain, port_plain = await _serve(compression=False)
        try:
            async with connect(f"ws://127.0.0.1:{port}/ocpp/CP-1", subprotocols=[Subprotocol("ocpp1.6")]) as ws:
                agreed = ws.response.headers.get("Sec-WebSocket-Extensions")
                message = '[2,"1","Heartbeat",{}]' * 20
                await ws.send(message)
                echoed = str(await ws.recv())
                assert echoed == message
            async with connect(f"ws://127.0.0.1:{port_plain}/ocpp/CP-1") as ws:
                refused = ws.response.headers.get("Sec-WebSocket-Extensions")
            return agreed, refused, echoed
        finally:
            await _stop(server)
            await _stop(plain)

    agreed, refused, _ = asyncio.run(scenario())
    assert agreed == "permessage-deflate"
    assert refused is None


@pytest.mark.parametrize(
    ("offers", "agreed"),
    [
        (["permessage-deflate"], True),
        (["permessage-deflate; client_max_window_bits"], True),
        (["permessage-deflate; server_max_window_bits=10"], False),
        (["permessage-deflate; server_no_context_takeover"], False),
        # The first offer restricts the server; the fallback does not.
        (["permessage-deflate; server_max_window_bits=10, permessage-deflate"], True),
        (["x-webkit-deflate-frame"], False),
        ([], False),
    ],
)
def test_which_deflate_offers_are_agreed(offers: list[str], agreed: bool) -> None:
    request = Request("/", Headers([("Sec-WebSocket-Extensions", offer) for offer in offers]))
    assert _deflate_offered(request) is agreed


def test_connection_closed_covers_both_libraries() -> None:
    import picows.websockets.exceptions as picows_exceptions
    import websockets.exceptions as websockets_exceptions

    assert picows_exceptions.ConnectionClosed in CONNECTION_CLOSED
    assert websockets_exceptions.ConnectionClosed in CONNECTION_CLOSED


def test_frames_sent_with_the_request_are_read_beyond_the_first_buffer_and_not_counted_as_the_request() -> None:
    """A small request and a 20 KB frame in one write: 101, then the frame, read over several buffers."""
    message = "x" * 20_000

    async def scenario() -> bytes:
        server, port = await _serve()
        try:
            return await _raw_exchange(port, _upgrade_request() + _masked_text(message), read_for_s=1.0)
        finally:
            await _stop(server)

    head, _, frames = asyncio.run(scenario()).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head[:80]
    assert _server_texts(frames) == [message.encode()]


def test_an_upgrade_that_websockets_accepts_is_not_refused_by_picows() -> None:
    """``Connection: keep-alive, Upgrade`` is a valid upgrade (RFC 6455 4.2.1); picows alone wants exactly "upgrade"."""

    async def scenario() -> bytes:
        server, port = await _serve()
        try:
            request = _upgrade_request().replace(b"Connection: Upgrade", b"Connection: keep-alive, Upgrade")
            return await _raw_exchange(port, request, read_for_s=0.5)
        finally:
            await _stop(server)

    assert asyncio.run(scenario()).startswith(b"HTTP/1.1 101")


def test_a_charger_admitted_while_the_gateway_stops_gets_503() -> None:
    release = asyncio.Event()

    async def held(_opening: Opening, _request: Request) -> Response | None:
        await release.wait()
        return None

    async def scenario() -> bytes:
        server, port = await _serve(held)
        exchange = asyncio.create_task(_raw_exchange(port, _upgrade_request(), read_for_s=3))
        await asyncio.sleep(0.2)
        server.close()
        release.set()
        answer = await exchange
        await asyncio.wait_for(server.wait_closed(), 10)
        return answer

    assert asyncio.run(scenario()).startswith(b"HTTP/1.1 503")


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_a_charger_that_leaves_during_its_decision_gets_no_connection(loop: str) -> None:
    handled: list[ChargerSocket] = []

    async def record(socket_: ChargerSocket) -> None:
        handled.append(socket_)

    async def scenario() -> None:
        release = asyncio.Event()

        async def held(_opening: Opening, _request: Request) -> Response | None:
            await release.wait()
            return None

        server, port = await _serve(held, handler=record)
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_upgrade_request())
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.close()
            await asyncio.sleep(0.2)
            release.set()
            await asyncio.sleep(0.3)
        finally:
            await _stop(server)

    LOOPS[loop](scenario())
    assert handled == []


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_large_answers_to_a_slow_reader_arrive_intact(loop: str) -> None:
    """Frames over 8 KiB queued for a peer that does not read yet (picows' writelines path)."""
    messages = [chr(ord("a") + n % 26) * (30_000 + n) for n in range(400)]

    async def scenario() -> list[bytes]:
        server, port = await _serve()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_upgrade_request())
            await reader.readuntil(b"\r\n\r\n")
            for message in messages:
                writer.write(_masked_text(message))
            await writer.drain()
            await asyncio.sleep(0.5)  # the echoes pile up in the server's write buffer
            expected = sum(len(m) + 4 for m in messages)
            data = await asyncio.wait_for(reader.readexactly(expected), 10)
            writer.close()
            return _server_texts(data)
        finally:
            await _stop(server)

    assert LOOPS[loop](scenario()) == [m.encode() for m in messages]


# -- messages straight from the frame callback (ChargerSocket.serve) ------------------------


def _masked(first_byte: int, payload: bytes) -> bytes:
    """A client frame: ``first_byte`` is FIN/RSV/opcode (0x81 a final text frame, 0x01 a
    first text fragment, 0x00 / 0x80 a continuation / the last one)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    if len(payload) < 126:
        return struct.pack("!BB", first_byte, 0x80 | len(payload)) + mask + masked
    if len(payload) < 65536:
        return struct.pack("!BBH", first_byte, 0x80 | 126, len(payload)) + mask + masked
    return struct.pack("!BBQ", first_byte, 0x80 | 127, len(payload)) + mask + masked


def _close_code(data: bytes) -> int | None:
    """The code of the server's close frame in ``data`` (after its text frames), if any."""
    at = data.find(b"\x88")
    if at < 0 or len(data) < at + 4:
        return None
    return int(struct.unpack("!H", data[at + 2 : at + 4])[0])


def _serving(
    take_for: Callable[[ChargerSocket], Callable[[str | bytes], Coroutine[Any, Any, None] | None]],
    failures: list[BaseException] | None = None,
    before: float = 0.0,
) -> Callable[[ChargerSocket], Awaitable[None]]:
    """A handler that serves each socket with ``take_for(socket)``, ``before`` s after it opened."""

    async def handler(socket_: ChargerSocket) -> None:
        await asyncio.sleep(before)
        await socket_.serve(take_for(socket_), (failures if failures is not None else []).append)

    return handler


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_messages_are_taken_in_order_while_one_waits(loop: str) -> None:
    """A message whose remainder waits holds back the next ones; none is lost or reordered."""
    taken: list[str] = []

    def take_for(socket_: ChargerSocket) -> Callable[[str | bytes], Coroutine[Any, Any, None] | None]:
        async def slowly(message: str) -> None:
            await asyncio.sleep(0.2)
            await socket_.send(message)

        def take(message: str | bytes) -> Coroutine[Any, Any, None] | None:
            taken.append(str(message))
            if message == "slow":
                return slowly(message)
            return socket_.send(message)  # type: ignore[no-any-return]

        return take

    sent = ["a", "slow", *[f"m{n}" for n in range(40)]]

    async def scenario() -> list[bytes]:
        server, port = await _serve(handler=_serving(take_for))
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_upgrade_request() + _masked(0x81, b"ready"))
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(2 + len("ready"))  # served: the batch meets the frame callback
            writer.write(b"".join(_masked(0x81, m.encode()) for m in sent))
            await writer.drain()
            data = await asyncio.wait_for(reader.readexactly(sum(len(m) + 2 for m in sent)), 10)
            writer.close()
            return _server_texts(data)
        finally:
            await _stop(server)

    assert LOOPS[loop](scenario()) == [m.encode() for m in sent]
    assert taken == ["ready", *sent]


def test_reading_pauses_while_messages_wait_and_resumes_after() -> None:
    """Behind a message that does not finish, at most a queue's worth is read; then all are answered."""
    release = asyncio.Event()
    sockets: list[ChargerSocket] = []

    def take_for(socket_: ChargerSocket) -> Callable[[str | bytes], Coroutine[Any, Any, None] | None]:
        sockets.append(socket_)

        async def held(message: str | bytes) -> None:
            await release.wait()
            await socket_.send(message)

        def take(message: str | bytes) -> Coroutine[Any, Any, None] | None:
            return held(message) if message == "hold" else socket_.send(message)  # type: ignore[return-value]

        return take

    sent = ["hold", *[f"m{n}" for n in range(100)]]

    async def scenario() -> tuple[bool, list[bytes]]:
        server, port = await _serve(handler=_serving(take_for))
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_upgrade_request() + _masked(0x81, b"ready"))
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(2 + len("ready"))  # served: the batch meets the frame callback
            writer.write(b"".join(_masked(0x81, m.encode()) for m in sent))
            await writer.drain()
            await asyncio.sleep(0.5)
            paused = sockets[0]._paused is not None
            release.set()
            expected = sum(len(m) + 2 for m in sent)
            data = await asyncio.wait_for(reader.readexactly(expected), 10)
            writer.close()
            return paused, _server_texts(data)
        finally:
            await _stop(server)

    paused, answers = asyncio.run(scenario())
    assert paused
    assert answers == [m.encode() for m in sent]


def test_messages_sent_before_serve_are_taken_once_it_starts() -> None:
    """Frames that arrive while the connection is being registered wait for ``serve``."""

    async def scenario() -> list[bytes]:
        server, port = await _serve(handler=_serving(lambda s: s.send, before=0.3))  # type: ignore[arg-type,return-value]
        try:
            data = await _raw_exchange(port, _upgrade_request() + _masked(0x81, b"one") + _masked(0x81, b"two"), 1.0)
            return _server_texts(data.partition(b"\r\n\r\n")[2])
        finally:
            await _stop(server)

    assert asyncio.run(scenario()) == [b"one", b"two"]


def test_a_fragmented_message_is_taken_whole() -> None:
    async def scenario() -> list[bytes]:
        server, port = await _serve()
        try:
            frames = _masked(0x01, b"[2,") + _masked(0x00, b'"f","Heart') + _masked(0x80, b'beat",{}]')
            data = await _raw_exchange(port, _upgrade_request() + frames + _masked(0x81, b"after"), 1.0)
            return _server_texts(data.partition(b"\r\n\r\n")[2])
        finally:
            await _stop(server)

    assert asyncio.run(scenario()) == [b'[2,"f","Heartbeat",{}]', b"after"]


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        (_masked(0x81, b"\xff\xfe not utf-8"), 1007),
        (_masked(0x80, b"continuation of nothing"), 1002),
        (_masked(0x01, b"[2,") + _masked(0x81, b"a new message mid-fragments"), 1002),
        (_masked(0x01, b"x" * 40_000) + _masked(0x80, b"y" * 40_000), 1009),  # 64 KiB max_size
    ],
    ids=["invalid-utf8", "stray-continuation", "interleaved", "too-big-in-fragments"],
)
def test_a_malformed_message_closes_the_connection_with_its_code(frames: bytes, code: int) -> None:
    taken: list[str | bytes] = []

    def take_for(_socket: ChargerSocket) -> Callable[[str | bytes], Coroutine[Any, Any, None] | None]:
        def take(message: str | bytes) -> None:
            taken.append(message)

        return take

    async def scenario() -> bytes:
        server, port = await _serve(handler=_serving(take_for))
        try:
            return await _raw_exchange(port, _upgrade_request() + frames, 1.0)
        finally:
            await _stop(server)

    answer = asyncio.run(scenario()).partition(b"\r\n\r\n")[2]
    assert _close_code(answer) == code
    assert taken == []


def test_a_failing_remainder_is_reported_and_the_next_message_still_taken() -> None:
    failures: list[BaseException] = []

    def take_for(socket_: ChargerSocket) -> Callable[[str | bytes], Coroutine[Any, Any, None] | None]:
        async def broken() -> None:
            raise ValueError("a bug in one frame's handling")

        def take(message: str | bytes) -> Coroutine[Any, Any, None] | None:
            return broken() if message == "bug" else socket_.send(message)  # type: ignore[return-value]

        return take

    async def scenario() -> list[bytes]:
        server, port = await _serve(handler=_serving(take_for, failures))
        try:
            data = await _raw_exchange(port, _upgrade_request() + _masked(0x81, b"bug") + _masked(0x81, b"ok"), 1.0)
            return _server_texts(data.partition(b"\r\n\r\n")[2])
        finally:
            await _stop(server)

    assert asyncio.run(scenario()) == [b"ok"]
    assert [type(f) for f in failures] == [ValueError]


def test_a_served_socket_cannot_also_be_iterated() -> None:
    errors: list[str] = []

    async def handler(socket_: ChargerSocket) -> None:
        for attempt in (lambda: socket_.__aiter__(), lambda: socket_.recv().send(None)):
            try:
                attempt()
            except TypeError as exc:
                errors.append(str(exc))

    async def scenario() -> None:
        server, port = await _serve(handler=handler)
        try:
            await _raw_exchange(port, _upgrade_request(), 0.5)
        finally:
            await _stop(server)

    asyncio.run(scenario())
    assert len(errors) == 2 and all("serve()" in e for e in errors)


def _answers_and_close(data: bytes) -> tuple[list[bytes], int | None]:
    """The server's text frames, then the code of its close frame (if any)."""
    texts = []
    while data and data[0] == 0x81:
        size, start = data[1], 2
        if size == 126:
            size, start = struct.unpack("!H", data[2:4])[0], 4
        texts.append(data[start : start + size])
        data = data[start + size :]
    code = int(struct.unpack("!H", data[2:4])[0]) if data[:1] == b"\x88" and len(data) >= 4 else None
    return texts, code


@pytest.mark.parametrize("fragment", [b"x", b""], ids=["one-byte", "empty"])
def test_a_message_in_too_many_fragments_is_refused_at_once(fragment: bytes) -> None:
    """Fragments are counted: one past ``MAX_FRAGMENTS`` ends in 1009, however small they are.

    The client sends nothing after the fragment that is refused: bytes left unread when
    the server closes would make its close an RST, which can discard the close frame."""
    frames = _masked(0x01, b"[") + b"".join(_masked(0x00, fragment) for _ in range(MAX_FRAGMENTS))

    async def scenario() -> bytes:
        server, port = await _serve()
        try:
            return await _raw_exchange(port, _upgrade_request() + frames, 1.0)
        finally:
            await _stop(server)

    answer = asyncio.run(scenario()).partition(b"\r\n\r\n")[2]
    assert _close_code(answer) == 1009


def test_a_message_in_many_fragments_within_the_limit_is_taken_whole() -> None:
    parts = [f"{n:03d}".encode() for n in range(500)]
    frames = _masked(0x01, parts[0]) + b"".join(_masked(0x00, p) for p in parts[1:-1]) + _masked(0x80, parts[-1])

    async def scenario() -> list[bytes]:
        server, port = await _serve()
        try:
            data = await _raw_exchange(port, _upgrade_request() + frames, 1.0)
            return _server_texts(data.partition(b"\r\n\r\n")[2])
        finally:
            await _stop(server)

    assert asyncio.run(scenario()) == [b"".join(parts)]


def test_invalid_text_ends_the_connection_in_its_turn() -> None:
    """Messages before the invalid one are answered; none after it is taken; then 1007."""
    release = asyncio.Event()
    taken: list[str] = []

    def take_for(socket_: ChargerSocket) -> Callable[[str | bytes], Coroutine[Any, Any, None] | None]:
        async def held(message: str) -> None:
            await release.wait()
            await socket_.send(message)

        def take(message: str | bytes) -> Coroutine[Any, Any, None] | None:
            taken.append(str(message))
            return held(str(message)) if message == "A" else socket_.send(message)  # type: ignore[return-value]

        return take

    async def scenario() -> tuple[list[bytes], int | None]:
        server, port = await _serve(handler=_serving(take_for))
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_upgrade_request() + _masked(0x81, b"ready"))
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(2 + len("ready"))
            writer.write(b"".join(_masked(0x81, m) for m in (b"A", b"B", b"C", b"\xff bad", b"D")))
            await writer.drain()
            await asyncio.sleep(0.3)
            release.set()
            data = b""
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    while chunk := await reader.read(65536):
                        data += chunk
            writer.close()
            return _answers_and_close(data)
        finally:
            await _stop(server)

    answers, code = asyncio.run(scenario())
    assert answers == [b"A", b"B", b"C"]
    assert code == 1007
    assert taken == ["ready", "A", "B", "C"]


def test_a_take_that_raises_is_reported_and_the_queue_goes_on() -> None:
    failures: list[BaseException] = []

    def take_for(socket_: ChargerSocket) -> Callable[[str | bytes], Coroutine[Any, Any, None] | None]:
        def take(message: str | bytes) -> Coroutine[Any, Any, None] | None:
            if message == "boom":
                raise RuntimeError("a bug in take")
            return socket_.send(message)  # type: ignore[no-any-return]

        return take

    async def scenario() -> list[bytes]:
        server, port = await _serve(handler=_serving(take_for, failures))
        try:
            frames = b"".join(_masked(0x81, m) for m in (b"one", b"boom", b"two"))
            data = await _raw_exchange(port, _upgrade_request() + frames, 1.0)
            return _server_texts(data.partition(b"\r\n\r\n")[2])
        finally:
            await _stop(server)

    assert asyncio.run(scenario()) == [b"one", b"two"]
    assert [str(f) for f in failures] == ["a bug in take"]


def test_a_cancelled_serve_cancels_the_message_being_handled() -> None:
    outcome: list[str] = []
    handlers: list[asyncio.Task[None]] = []

    def take_for(socket_: ChargerSocket) -> Callable[[str | bytes], Coroutine[Any, Any, None] | None]:
        async def forever(message: str | bytes) -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                outcome.append("cancelled")
                raise

        def take(message: str | bytes) -> Coroutine[Any, Any, None] | None:
            return forever(message)

        return take

    async def handler(socket_: ChargerSocket) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        await _serving(take_for)(socket_)

    async def scenario() -> list[str]:
        server, port = await _serve(handler=handler)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_upgrade_request() + _masked(0x81, b"hold"))
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(0.3)
            handlers[0].cancel()
            await asyncio.sleep(0.1)
            seen = list(outcome)  # before the loop's own shutdown cancels what is left
            writer.close()
            return seen
        finally:
            await _stop(server)

    assert asyncio.run(scenario()) == ["cancelled"]
