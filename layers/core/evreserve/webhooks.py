"""Webhooks: the home of what a subscription is, which URLs it may have, and when a delivery is retried.

A webhook is an account's subscription to its reservation events at an HTTPS URL
(docs/api.md, "Reservation events"). The publisher turns each event into one
``Delivery`` per matching webhook, on a queue; the deliverer POSTs it, signed
(``evreserve.signing``), and after a failure puts it back with the next delay of
``retry_delay`` until ``RetrySchedule.window_s`` has passed since the first attempt.

Pure: no I/O. Resolving a URL's host and refusing non-public addresses at delivery time
(where a name could point anywhere by then) is the deliverer's; this module only judges
addresses and URLs.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final
from urllib.parse import urlsplit

from .errors import InvalidRequest
from .events import EventType
from .models import Model

MAX_URL_LENGTH: Final = 2048
MAX_DESCRIPTION_LENGTH: Final = 200
#: A receiver has this long to answer 2xx (the spec's 10 s), connection included.
DELIVERY_TIMEOUT_S: Final = 10.0
#: At most this much of a receiver's answer is read (its status is what counts).
MAX_RESPONSE_BYTES: Final = 4096
#: SQS delays a message at most 15 minutes; a longer wait is several hops.
MAX_QUEUE_DELAY_S: Final = 900
#: Hosts that are this machine whatever DNS says.
_LOCAL_NAMES: Final = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


class Webhook(Model):
    """An account's subscription: where its events go, which ones, and the secret that signs them."""

    webhook_id: str
    account_id: int
    url: str
    events: tuple[EventType, ...]
    description: str | None = None
    #: Signs every delivery; shown to the owner once, at creation.
    secret: str
    created_at: datetime

    def wants(self, kind: EventType) -> bool:
        return kind in self.events


class NewWebhook(Model):
    url: str
    #: ``None``: every type.
    events: tuple[EventType, ...] | None = None
    description: str | None = None


def new_webhook_id() -> str:
    return "wh_" + secrets.token_hex(12)


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def address_allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_loopback: bool) -> bool:
    """Whether a delivery may connect to ``address``: a public one, or loopback where the local stack allows it.

    ``is_global`` is false for private, loopback, link-local (cloud metadata at
    169.254.169.254), shared (100.64/10), reserved and unspecified addresses. An IPv6
    address that embeds an IPv4 one (mapped, 6to4, Teredo) is judged by what it embeds,
    so ``::ffff:10.0.0.1`` is as private as ``10.0.0.1``.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is not None:
            return address_allowed(embedded, allow_loopback=allow_loopback)
    if address.is_loopback:
        return allow_loopback
    return address.is_global and not address.is_multicast


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_url(url: str, *, allow_local_http: bool) -> str:
    """The URL as given, if a webhook may have it; ``InvalidRequest`` (field ``url``) saying why not.

    ``https://`` to a host that is a name or a public address; where the local stack
    allows it (``allow_local_http``), also ``http://`` or ``https://`` to this machine
    (127.0.0.1, ::1, localhost). A name is resolved again at every delivery and each of
    its addresses checked then (``address_allowed``): what it resolves to now proves nothing.
    """

    def refuse(message: str) -> InvalidRequest:
        return InvalidRequest(message, field="url")

    if len(url) > MAX_URL_LENGTH:
        raise refuse(f"url is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise refuse("url contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise refuse(f"url is not a valid URL: {exc}") from exc
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise refuse("url has no host")
    if parts.username is not None or parts.password is not None:
        raise refuse("url must not carry a user name or password; the signature authenticates deliveries")
    if parts.fragment:
        raise refuse("url must not have a fragment")
    if port == 0:
        raise refuse("url has port 0")
    literal = _literal_address(host)
    local = host.lower() in _LOCAL_NAMES or host.lower().endswith(".localhost") or bool(literal and literal.is_loopback)
    if parts.scheme not in ("https", "http"):
        raise refuse("url must be an https:// URL")
    if local:
        if not allow_local_http:
            raise refuse("url must not point at a loopback address")
        return url
    if parts.scheme != "https":
        raise refuse("url must be an https:// URL")
    if literal is not None and not address_allowed(literal, allow_loopback=False):
        raise refuse("url must not point at a private, loopback or link-local address")
    return url


def check_events(events: tuple[EventType, ...] | None) -> tuple[EventType, ...]:
    """The types a new webhook receives: those given, once each, in the enum's order; all by default."""
    if events is None:
        return tuple(EventType)
    if not events:
        raise InvalidRequest("events must name at least one type, or be left out for all", field="events")
    return tuple(kind for kind in EventType if kind in set(events))


# -- deliveries ------------------------------------------------------------------------------


class DeliveryStatus(StrEnum):
    DELIVERED = "delivered"
    RETRYING = "retrying"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """Exponential backoff: ``base_s`` doubling up to ``max_s``, for at least ``window_s``."""

    base_s: float = 30.0
    max_s: float = 3600.0
    window_s: float = 86400.0

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt ``attempt`` (1 is the first)."""
        return float(min(self.max_s, self.base_s * 2.0 ** min(attempt - 1, 40)))

    def gives_up(self, first_at: float, now: float) -> bool:
        """Whether a failed attempt at ``now`` is the last: the window since the first one has passed."""
        return now - first_at >= self.window_s


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event on its way to one webhook: the delivery queue's message.

    ``body`` is the event exactly as every attempt sends it (the signature covers these
    bytes); ``attempt`` is the one about to be made; ``not_before`` holds it back past
    SQS's 15-minute delay limit.
    """

    webhook_id: str
    account_id: int
    event_id: str
    event_type: str
    body: str
    attempt: int = 1
    first_at: float | None = None
    not_before: float = 0.0

    def to_message(self) -> str:
        return json.dumps(
            {
                "v": 1,
                "webhookId": self.webhook_id,
                "accountId": self.account_id,
                "eventId": self.event_id,
                "type": self.event_type,
                "body": self.body,
                "attempt": self.attempt,
                "firstAt": self.first_at,
                "notBefore": self.not_before,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_message(cls, text: str) -> Delivery:
        data: dict[str, Any] = json.loads(text)
        if data.get("v") != 1:
            raise ValueError(f"unknown delivery message version {data.get('v')!r}")
        return cls(
            webhook_id=str(data["webhookId"]),
            account_id=int(data["accountId"]),
            event_id=str(data["eventId"]),
            event_type=str(data["type"]),
            body=str(data["body"]),
            attempt=int(data["attempt"]),
            first_at=float(data["firstAt"]) if data.get("firstAt") is not None else None,
            not_before=float(data.get("notBefore") or 0.0),
        )

    def retried(self, first_at: float, now: float, schedule: RetrySchedule) -> Delivery:
        """The next attempt after this one failed at ``now``."""
        return Delivery(
            webhook_id=self.webhook_id,
            account_id=self.account_id,
            event_id=self.event_id,
            event_type=self.event_type,
            body=self.body,
            attempt=self.attempt + 1,
            first_at=first_at,
            not_before=now + schedule.delay(self.attempt),
        )


def queue_delay(not_before: float, now: float) -> int:
    """SQS ``DelaySeconds`` for a message due at ``not_before``: what is left, at most 15 minutes."""
    return max(0, min(MAX_QUEUE_DELAY_S, int(not_before - now + 0.999)))


class DeliveryRecord(Model):
    """One attempt, as the webhook's delivery log keeps it."""

    event_id: str
    event_type: str
    attempt: int
    status: DeliveryStatus
    #: The receiver's HTTP status; ``None`` when none came (refused address, timeout, connection error).
    response_status: int | None = None
    #: Why the attempt failed, when it did.
    error: str | None = None
    at: datetime
