"""One webhook delivery over HTTP: resolve, refuse what is not public, POST to the address checked.

A URL's host is resolved at every delivery and each address it gives is checked
(``evreserve.webhooks.address_allowed``); the request then goes to one of those very
addresses, with the host name kept for TLS (SNI and certificate check) and ``Host``. So a
name that resolves to a public address when checked and to 169.254.169.254 a moment later
(DNS rebinding) never reaches the second one. Redirects are not followed: a 3xx is a
failed attempt, as a redirect could lead anywhere.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3

from evreserve.webhooks import DELIVERY_TIMEOUT_S, address_allowed

USER_AGENT = "evreserve-webhooks/1"


@dataclass(frozen=True, slots=True)
class Answer:
    """What an attempt came to: the receiver's status, or why there was none."""

    status: int | None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _addresses(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in seen:
            seen.append(address)
    return seen


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    allow_loopback: bool = False,
    timeout_s: float = DELIVERY_TIMEOUT_S,
) -> Answer:
    """POST ``body`` to ``url``; never raises for anything the network or the receiver does."""
    started = time.monotonic()
    parts = urlsplit(url)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    try:
        addresses = _addresses(host, port)
    except (OSError, UnicodeError) as exc:
        return Answer(None, f"cannot resolve {host}: {exc}")
    for address in addresses:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
        if not address_allowed(parsed, allow_loopback=allow_loopback):
            return Answer(None, f"{host} resolves to {parsed}, which deliveries may not reach")
        if not https and not parsed.is_loopback:
            return Answer(None, "plain http:// is only for this machine")
    if not addresses:
        return Answer(None, f"cannot resolve {host}")
    remaining = max(0.1, timeout_s - (time.monotonic() - started))
    timeout = urllib3.Timeout(total=remaining)
    pool: urllib3.HTTPConnectionPool
    if https:
        pool = urllib3.HTTPSConnectionPool(
            addresses[0],
            port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            server_hostname=host,
            assert_hostname=host,
            cert_reqs="CERT_REQUIRED",
        )
    else:
        pool = urllib3.HTTPConnectionPool(addresses[0], port, timeout=timeout, retries=False, maxsize=1)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    # As the URL writes it (brackets of an IPv6 literal, an explicit port).
    host_header = parts.netloc.rsplit("@", 1)[-1]
    try:
        response = pool.urlopen(
            "POST",
            target,
            body=body,
            headers={**headers, "Host": host_header, "User-Agent": USER_AGENT},
            redirect=False,
            retries=False,
            preload_content=False,
        )
        # The status is the answer; the body is not read (a receiver could send it forever).
        status = int(response.status)
        response.release_conn()
        return Answer(status, None if 200 <= status < 300 else f"HTTP {status}")
    except urllib3.exceptions.HTTPError as exc:
        return Answer(None, _reason(exc))
    finally:
        pool.close()


def _reason(exc: Exception) -> str:
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return "no answer within the timeout"
    if isinstance(exc, urllib3.exceptions.SSLError):
        return "TLS failed: " + str(exc.args[0] if exc.args else exc)[:200]
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return "connection failed"
    return type(exc).__name__ + ": " + str(exc)[:200]
