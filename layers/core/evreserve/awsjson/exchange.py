"""One HTTP/1.1 request and its answer on a kept connection, for the AWS JSON protocol.

Why not ``http.client``: per call it builds the request line and headers through several
methods, and parses the answer's headers with the ``email`` package into a message
object; about half of awsjson's CPU per call (docs/performance.md, issue 18). What these
services need is narrower: one POST to ``/`` written in one ``sendall``, and an answer
whose status, five headers and body are read off a buffered reader. That is this module,
strict where it matters: a malformed or cut-short answer is an error (the client retries
it as a lost connection), never a guess.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

#: Past these, an answer is not an AWS service's (http.client's limits).
MAX_LINE = 65536
MAX_HEADERS = 100
_HEX = b"0123456789abcdefABCDEF"


class Malformed(Exception):
    """The answer is not HTTP/1.x, or the connection ended inside it."""


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    #: Lower-case names; a repeated header keeps its last value.
    headers: dict[str, str]
    body: bytes
    #: Whether the connection may carry another request.
    reusable: bool


class Connection:
    """A socket (TLS or not) and the buffered reader its answers are read from."""

    __slots__ = ("_reader", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._reader = sock.makefile("rb")

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
        # The reader holds a reference to the socket: both close, or the descriptor stays open.
        self._reader.close()
        self.sock.close()

    def exchange(self, head: bytes, body: bytes) -> HttpAnswer:
        """Send a request (``head``: its request line and headers, without the blank line
        that ends them) and read its answer. Raises ``TimeoutError``, ``OSError`` or ``Malformed``."""
        self.sock.sendall(b"%s\r\nContent-Length: %d\r\n\r\n%s" % (head, len(body), body))
        while True:
            version, status = self._status_line()
            headers = self._headers()
            # An interim answer (100 Continue, 103) precedes the real one.
            if not 100 <= status < 200:
                break
        return self._answer(version, status, headers)

    def _line(self) -> bytes:
        line = self._reader.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise Malformed("a line of the answer is too long")
        if not line.endswith(b"\n"):
            raise Malformed("the connection ended inside the answer")
        return line

    def _status_line(self) -> tuple[bytes, int]:
        parts = self._line().split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
            raise Malformed(f"not an HTTP/1.x status line: {b' '.join(parts)[:80]!r}")
        return parts[0], int(parts[1])

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        readline = self._reader.readline
        # _line() inlined: this loop runs for every header of every answer.
        for _ in range(MAX_HEADERS + 1):
            line = readline(MAX_LINE + 1)
            if line == b"\r\n" or line == b"\n":
                return headers
            if len(line) > MAX_LINE:
                raise Malformed("a line of the answer is too long")
            if not line.endswith(b"\n"):
                raise Malformed("the connection ended inside the answer")
            name, colon, value = line.partition(b":")
            if not colon:
                raise Malformed(f"not a header line: {line[:80]!r}")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        raise Malformed("too many headers")

    def _answer(self, version: bytes, status: int, headers: dict[str, str]) -> HttpAnswer:
        connection = headers.get("connection", "").lower()
        reusable = "close" not in connection if version == b"HTTP/1.1" else "keep-alive" in connection
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._chunked()
        elif (length := headers.get("content-length")) is not None:
            if not (length.isascii() and length.isdigit()):
                raise Malformed(f"Content-Length is not a length: {length[:40]!r}")
            body = self._exactly(int(length))
        elif status in (204, 304):
            body = b""
        else:
            # Neither length nor chunks: the body is whatever comes until the server closes.
            body = self._reader.read()
            reusable = False
        return HttpAnswer(status, headers, body, reusable)

    def _exactly(self, size: int) -> bytes:
        data = self._reader.read(size)
        if len(data) != size:
            raise Malformed(f"the connection ended {size - len(data)} bytes before the answer's end")
        return data

    def _chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size_field = self._line().split(b";", 1)[0].strip()
            if not size_field or size_field.strip(_HEX):
                raise Malformed(f"not a chunk size: {size_field[:40]!r}")
            size = int(size_field, 16)
            if size == 0:
                # Trailers, if any, up to the blank line that ends the answer.
                while self._line() not in (b"\r\n", b"\n"):
                    pass
                return b"".join(chunks)
            chunks.append(self._exactly(size))
            if self._line() not in (b"\r\n", b"\n"):
                raise Malformed("a chunk is longer than its size")
