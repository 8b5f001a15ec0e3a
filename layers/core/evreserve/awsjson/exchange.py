"""One HTTP/1.1 request and its answer on a kept connection, for the AWS JSON protocol.

Why not ``http.client``: per call it builds the request line and headers through several
methods, and parses the answer's headers with the ``email`` package into a message
object; about half of awsjson's CPU per call (docs/performance.md, issue 18). What these
services need is narrower: one POST to ``/`` written in one ``sendall``, and an answer
whose status, five headers and body are read off the connection's own buffer. That is
this module, strict where it matters: a malformed or cut-short answer is an error (the
client retries it as a lost connection), never a guess.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

#: Past these, an answer is not an AWS service's (http.client's limits for lines and headers).
MAX_LINE = 65536
MAX_HEADERS = 100
#: A body past this is refused rather than held: DynamoDB's largest answer (BatchGetItem,
#: 16 MB) fits four times.
MAX_BODY = 64 * 1024 * 1024
#: Interim (1xx) answers passed over before the real one; a server sending more is broken.
MAX_INTERIM = 10
#: Chunks of one chunked answer: a server's are kilobytes, so 16 MB fits at 160 bytes each.
MAX_CHUNKS = 100_000
_RECEIVE = 65536
_HEX = b"0123456789abcdefABCDEF"
_BLANK = (b"\r\n", b"\n")


class Malformed(Exception):
    """The answer is not HTTP/1.x, is too large, or the connection ended inside it."""


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    #: Lower-case names; a repeated header keeps its last value.
    headers: dict[str, str]
    body: bytes
    #: Whether the connection may carry another request.
    reusable: bool


class Connection:
    """A socket (TLS or not) and what was received on it that no answer has used yet.

    The buffer is the connection's own, not a ``makefile`` reader's, so that bytes past
    the end of an answer are seen: such a connection is not reused (its next "answer"
    could be them), where a reader's buffer would hide them from the idle check.
    """

    __slots__ = ("_buffer", "_start", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        #: Received bytes; those before ``_start`` are used.
        self._buffer = bytearray()
        self._start = 0

    @classmethod
    def open(
        cls,
        host: str,
        port: int,
        *,
        connect_timeout: float,
        read_timeout: float,
        tls: ssl.SSLContext | None = None,
    ) -> Connection:
        """Connect (raises ``TimeoutError``/``OSError``) and, for HTTPS, shake hands."""
        sock = socket.create_connection((host, port), timeout=connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=host)
            sock.settimeout(read_timeout)
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def close(self) -> None:
        self.sock.close()

    def exchange(self, head: bytes, body: bytes) -> HttpAnswer:
        """Send a request (``head``: its request line and headers, without the blank line
        that ends them) and read its answer. Raises ``TimeoutError``, ``OSError`` or ``Malformed``.

        The buffer is empty here: an answer that leaves bytes in it makes the connection
        not reusable, and one that does not clears it (``_answer``)."""
        self.sock.sendall(b"%s\r\nContent-Length: %d\r\n\r\n%s" % (head, len(body), body))
        for _ in range(MAX_INTERIM + 1):
            version, status = self._status_line()
            headers = self._headers()
            if status == 101:
                raise Malformed("the server switched protocols")
            # An interim answer (100 Continue, 103) precedes the real one.
            if not 100 <= status < 200:
                return self._answer(version, status, headers)
        raise Malformed("too many interim answers")

    def _receive(self) -> bool:
        """More bytes into the buffer; ``False`` when the server has closed."""
        data = self.sock.recv(_RECEIVE)
        if not data:
            return False
        if self._start:
            del self._buffer[: self._start]
            self._start = 0
        self._buffer += data
        return True

    def _line(self, *, end_ok: bool = False) -> bytes:
        """The next line, its line break included; with ``end_ok``, ``b""`` if the server
        closed right there."""
        buffer = self._buffer
        while True:
            end = buffer.find(b"\n", self._start)
            if end >= 0:
                if end - self._start >= MAX_LINE:
                    raise Malformed("a line of the answer is too long")
                line = bytes(buffer[self._start : end + 1])
                self._start = end + 1
                return line
            if len(buffer) - self._start > MAX_LINE:
                raise Malformed("a line of the answer is too long")
            if not self._receive():
                if end_ok and self._start == len(buffer):
                    return b""
                raise Malformed("the connection ended inside the answer")

    def _status_line(self) -> tuple[bytes, int]:
        parts = self._line().split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
            raise Malformed(f"not an HTTP/1.x status line: {b' '.join(parts)[:80]!r}")
        return parts[0], int(parts[1])

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            line = self._line()
            if line in _BLANK:
                return headers
            name, colon, value = line.partition(b":")
            if not colon:
                raise Malformed(f"not a header line: {line[:80]!r}")
            key = name.strip().lower().decode("latin-1")
            text = value.strip().decode("latin-1")
            # Two lengths: which one frames the body is a guess (request smuggling's root).
            if key == "content-length" and headers.get(key, text) != text:
                raise Malformed("the answer has two different Content-Length headers")
            headers[key] = text
        raise Malformed("too many headers")

    def _answer(self, version: bytes, status: int, headers: dict[str, str]) -> HttpAnswer:
        connection = headers.get("connection", "").lower()
        reusable = "close" not in connection if version == b"HTTP/1.1" else "keep-alive" in connection
        coding = headers.get("transfer-encoding")
        if status in (204, 304):
            body = b""  # never a body, whatever the headers say (RFC 9112, 6.3)
        elif coding is not None:
            if coding.strip().lower() != "chunked":
                raise Malformed(f"a transfer coding this client does not read: {coding[:40]!r}")
            body, closed = self._chunked()
            reusable = reusable and not closed
        elif (length := headers.get("content-length")) is not None:
            # More than 19 digits is past any cap (and past 4,300, int() itself refuses).
            if not (length.isascii() and length.isdigit()) or len(length) > 19:
                raise Malformed(f"Content-Length is not a length this client takes: {length[:40]!r}")
            body = self._exactly(int(length))
        else:
            # Neither length nor chunks: the body is whatever comes until the server closes.
            body = self._until_closed()
            reusable = False
        if self._start < len(self._buffer):
            reusable = False  # bytes past the answer: the next one could not be told from them
        else:
            # Not kept until the next exchange: a pooled connection would hold its last answer.
            self._buffer.clear()
            self._start = 0
        return HttpAnswer(status, headers, body, reusable)

    def _exactly(self, size: int) -> bytes:
        _within_cap(size)
        while len(self._buffer) - self._start < size:
            if not self._receive():
                missing = size - (len(self._buffer) - self._start)
                raise Malformed(f"the connection ended {missing} bytes before the answer's end")
        end = self._start + size
        # Through a view: one copy of the body, not a slice and then a copy of it.
        with memoryview(self._buffer) as view:
            data = bytes(view[self._start : end])
        self._start = end
        return data

    def _until_closed(self) -> bytes:
        while self._receive():
            _within_cap(len(self._buffer) - self._start)
        data = bytes(self._buffer[self._start :])
        self._start = len(self._buffer)
        return data

    def _chunked(self) -> tuple[bytes, bool]:
        """The body, and whether the server closed after its last chunk."""
        body = bytearray()
        # Bounded by count as well as size: a body in 2-byte chunks costs a parse per 2 bytes.
        for _ in range(MAX_CHUNKS):
            size_field = self._line().split(b";", 1)[0].strip()
            if not size_field or size_field.strip(_HEX):
                raise Malformed(f"not a chunk size: {size_field[:40]!r}")
            size = int(size_field, 16)
            if size == 0:
                return bytes(body), self._trailers()
            _within_cap(len(body) + size)
            body += self._exactly(size)
            if self._line() not in _BLANK:
                raise Malformed("a chunk is longer than its size")
        raise Malformed(f"an answer in more than {MAX_CHUNKS} chunks")

    def _trailers(self) -> bool:
        """Skip the trailers up to the blank line that ends the answer; ``True`` if the
        server closed instead, which ends it too (as http.client reads it)."""
        for _ in range(MAX_HEADERS + 1):
            line = self._line(end_ok=True)
            if not line:
                return True
            if line in _BLANK:
                return False
        raise Malformed("too many trailers")


def _within_cap(size: int) -> None:
    if size > MAX_BODY:
        raise Malformed(f"an answer of {size} bytes is past the {MAX_BODY} this client holds")
