"""awsjson's HTTP/1.1 exchange: the answers it reads, and the ones it refuses rather than guess at."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from evreserve.awsjson import DYNAMODB, JsonClient
from evreserve.awsjson import exchange as exchange_module
from evreserve.awsjson.exchange import MAX_BODY, MAX_HEADERS, MAX_LINE, Connection, HttpAnswer, Malformed

HEAD = b"POST / HTTP/1.1\r\nHost: example\r\nX-Amz-Target: DynamoDB_20120810.GetItem"


class Peer:
    """The server end of a socket pair: records what arrived, answers with canned bytes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received = b""

    def answer(self, data: bytes, *, then_close: bool = False) -> None:
        self.sock.sendall(data)
        if then_close:
            self.sock.shutdown(socket.SHUT_WR)


@pytest.fixture
def pair() -> Iterator[tuple[Connection, Peer]]:
    ours, theirs = socket.socketpair()
    ours.settimeout(2)
    conn = Connection(ours)
    yield conn, Peer(theirs)
    conn.close()
    theirs.close()


def exchange(conn: Connection, peer: Peer, canned: bytes, *, then_close: bool = False) -> HttpAnswer:
    # The canned answer is written before the request is read, as a fast server may: the
    # exchange must not depend on the order.
    peer.answer(canned, then_close=then_close)
    answer = conn.exchange(HEAD, b'{"TableName":"t"}')
    peer.sock.settimeout(1)
    peer.received += peer.sock.recv(65536)
    return answer


def test_the_request_is_one_post_with_its_length(pair: tuple[Connection, Peer]) -> None:
    conn, peer = pair
    exchange(conn, peer, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    assert peer.received == HEAD + b'\r\nContent-Length: 17\r\n\r\n{"TableName":"t"}'


def test_a_sized_answer_keeps_the_connection(pair: tuple[Connection, Peer]) -> None:
    conn, peer = pair
    canned = b"HTTP/1.1 200 OK\r\nX-Amzn-RequestId: r1\r\nx-amz-crc32: 2745614147\r\nContent-Length: 2\r\n\r\n{}"
    answer = exchange(conn, peer, canned)
    assert answer == HttpAnswer(
        200, {"x-amzn-requestid": "r1", "x-amz-crc32": "2745614147", "content-length": "2"}, b"{}", True
    )
    # The next answer on the same connection starts where the first one ended.
    second = exchange(conn, peer, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 5\r\n\r\nnope!")
    assert (second.status, second.body, second.reusable) == (400, b"nope!", True)


def test_chunks_are_joined_and_trailers_skipped(pair: tuple[Connection, Peer]) -> None:
    conn, peer = pair
    canned = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'3;ext=1\r\n{"a\r\nA\r\n": [1, 2]}\r\n0\r\nX-Trailer: t\r\n\r\n'
    )
    answer = exchange(conn, peer, canned)
    assert (answer.body, answer.reusable) == (b'{"a": [1, 2]}', True)


def test_interim_answers_are_passed_over(pair: tuple[Connection, Peer]) -> None:
    conn, peer = pair
    canned = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    assert exchange(conn, peer, canned).status == 200


@pytest.mark.parametrize(
    ("canned", "reusable"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n{}", True),
        (b"HTTP/1.1 204 No Content\r\n\r\n", True),
    ],
)
def test_whether_the_connection_is_kept(pair: tuple[Connection, Peer], canned: bytes, reusable: bool) -> None:
    conn, peer = pair
    assert exchange(conn, peer, canned).reusable is reusable


def test_without_a_length_the_body_runs_to_the_close(pair: tuple[Connection, Peer]) -> None:
    conn, peer = pair
    answer = exchange(conn, peer, b"HTTP/1.1 502 Bad Gateway\r\n\r\n<html>down</html>", then_close=True)
    assert (answer.status, answer.body, answer.reusable) == (502, b"<html>down</html>", False)


@pytest.mark.parametrize(
    "canned",
    [
        pytest.param(b"", id="closed before answering"),
        pytest.param(b"SSH-2.0-OpenSSH\r\n", id="not HTTP"),
        pytest.param(b"HTTP/1.1 2000 OK\r\n\r\n", id="status of four digits"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", id="body cut short"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n{}", id="negative length"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n{}", id="length not ASCII digits"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Le", id="cut inside the headers"),
        pytest.param(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", id="header without colon"),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n", id="negative chunk"),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\n{}\r\n", id="chunk size 0x"),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}}\r\n0\r\n\r\n", id="long chunk"),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n", id="no last chunk"),
        pytest.param(b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_LINE + b"\r\n\r\n", id="line too long"),
        pytest.param(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * (MAX_HEADERS + 1) + b"\r\n", id="too many headers"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n{}" % (MAX_BODY + 1), id="length past the cap"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", id="length past memory"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n", id="length past int()"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + b"T: x\r\n" * (MAX_HEADERS + 1),
            id="endless trailers",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % (MAX_BODY + 1), id="chunk past the cap"
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}}", id="two lengths"),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", id="other coding"),
        pytest.param(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", id="switched protocols"),
        pytest.param(b"HTTP/1.1 100 Continue\r\n\r\n" * 12 + b"HTTP/1.1 200 OK\r\n\r\n", id="endless interim"),
    ],
)
def test_a_malformed_answer_is_refused(pair: tuple[Connection, Peer], canned: bytes) -> None:
    conn, peer = pair
    with pytest.raises(Malformed):
        exchange(conn, peer, canned, then_close=True)


def test_silence_is_a_timeout(pair: tuple[Connection, Peer]) -> None:
    conn, _peer = pair
    conn.sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        conn.exchange(HEAD, b"{}")


def test_open_connects_with_no_delay_and_the_read_timeout() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(server.accept()[0]))
    thread.start()
    conn = Connection.open("127.0.0.1", server.getsockname()[1], connect_timeout=2, read_timeout=3.5)
    try:
        thread.join(5)
        assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert conn.sock.gettimeout() == 3.5
    finally:
        conn.close()
        for sock in accepted:
            sock.close()
        server.close()
    assert conn.sock.fileno() == -1


def test_bytes_past_the_answer_make_the_connection_unusable(pair: tuple[Connection, Peer]) -> None:
    """A second answer nobody asked for, sent with the first, must never answer the next request."""
    conn, peer = pair
    stale = b'HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{"stale":"yes"}'
    answer = exchange(conn, peer, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}" + stale)
    assert (answer.body, answer.reusable) == (b"{}", False)


def test_a_stray_line_break_after_the_body_makes_the_connection_unusable(pair: tuple[Connection, Peer]) -> None:
    conn, peer = pair
    answer = exchange(conn, peer, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}\r\n")
    assert (answer.body, answer.reusable) == (b"{}", False)


def test_a_repeated_equal_length_is_read(pair: tuple[Connection, Peer]) -> None:
    conn, peer = pair
    answer = exchange(conn, peer, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}")
    assert (answer.body, answer.reusable) == (b"{}", True)


def test_no_body_after_204_whatever_its_length_says(pair: tuple[Connection, Peer]) -> None:
    conn, peer = pair
    answer = exchange(conn, peer, b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n")
    assert (answer.status, answer.body) == (204, b"")


def test_a_close_after_the_last_chunk_ends_the_answer(pair: tuple[Connection, Peer]) -> None:
    conn, peer = pair
    canned = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n"
    answer = exchange(conn, peer, canned, then_close=True)
    assert (answer.body, answer.reusable) == (b"{}", False)


@pytest.mark.parametrize("operation", ["GetItem\r\nX-Injected: yes", "GetItem\nX", "GetItem\0"])
def test_a_line_break_in_a_header_is_refused_before_sending(operation: str) -> None:
    # Port 9 (discard) is never reached: the request is refused before a connection is taken.
    client = JsonClient(
        DYNAMODB, region="us-east-1", endpoint="http://127.0.0.1:9", credentials=lambda: ("key", "secret", None)
    )
    with pytest.raises(ValueError, match="line break or NUL"):
        client.call(operation, {})
    assert client._pool == []


def test_a_kept_connection_does_not_hold_its_last_answer(pair: tuple[Connection, Peer]) -> None:
    conn, peer = pair
    answer = exchange(conn, peer, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000)
    assert answer.reusable
    assert len(conn._buffer) == 0


def test_an_answer_in_too_many_chunks_is_refused(
    pair: tuple[Connection, Peer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exchange_module, "MAX_CHUNKS", 3)
    conn, peer = pair
    canned = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1\r\nx\r\n" * 4 + b"0\r\n\r\n"
    with pytest.raises(Malformed, match="more than 3 chunks"):
        exchange(conn, peer, canned)
