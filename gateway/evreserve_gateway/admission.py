"""Who may open a charger connection, and in which OCPP version: the decisions, apart from I/O.

Pure and in memory: the identity in the path, the version, failed-login throttling and
the connect-storm gate. The handshake that takes these decisions, and checks the
password, is ``handshake.py``.
"""

from __future__ import annotations

import ipaddress
import math
import random
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from evreserve.models import OCPP_ID_PATTERN, OcppVersion

OCPP_PATH_PREFIX = "/ocpp/"
#: OCPP 2.0.1 caps the identity at 48 characters; 1.6's chargeBoxIdentity is shorter still.
MAX_IDENTITY_LENGTH = 48
#: What the API lets an account register (identifierString without ':', at most 48
#: characters). Anything else cannot be in the registry, so it is refused without a read.
_IDENTITY = re.compile(OCPP_ID_PATTERN)
#: When a charger offers several versions and the registry does not pin one.
PREFERENCE = (OcppVersion.V201, OcppVersion.V16)


def identity_from_path(path: str) -> str | None:
    """The percent-decoded station identity of ``/ocpp/{identity}``, or ``None`` if the path is not one.

    Only identities the registry can hold pass: OCPP's identifierString characters
    without ``:`` (Basic auth's separator, A00.FR.204), at most 48 of them. Blanks,
    ``/``, control or format characters and non-ASCII look-alikes are refused rather
    than guessed at, and cost no registry read.
    """
    raw = urlsplit(path).path
    if not raw.startswith(OCPP_PATH_PREFIX):
        return None
    encoded = raw[len(OCPP_PATH_PREFIX) :]
    if not encoded or "/" in encoded:
        return None
    try:
        identity = unquote(encoded, errors="strict")
    except UnicodeDecodeError:
        return None
    if len(identity) > MAX_IDENTITY_LENGTH or _IDENTITY.fullmatch(identity) is None:
        return None
    return identity


def choose_version(offered: Sequence[str], pinned: OcppVersion | None) -> OcppVersion | None:
    """The version a session speaks, or ``None`` when there is no acceptable one.

    A charger that offers no subprotocol gets the registry's version for it (real
    chargers do this); otherwise, as OCPP-J says, none: the server completes the
    handshake without a subprotocol and closes.
    """
    acceptable = (pinned,) if pinned is not None else PREFERENCE
    if not offered:
        return pinned
    for version in acceptable:
        if version.subprotocol in offered:
            return version
    return None


@dataclass(frozen=True, slots=True)
class Admission:
    """What ``process_request`` decided, for the connection handler and subprotocol selection."""

    charger_id: int
    account_id: int
    ocpp_id: str
    version: OcppVersion | None


# -- throttling failed logins ---------------------------------------------------------------


def address_key(host: str | None) -> str | None:
    """The throttling key of a peer address: IPv4 as is, IPv6 by its /64 (one subscriber's block)."""
    if not host:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass(slots=True)
class _Failures:
    count: int
    locked_until: float
    last: float


class FailureLockout:
    """Exponential lockout after repeated failures under one key, in memory (one instance).

    The first ``free`` failures cost nothing; each one after that locks the key for
    ``base_s`` doubled per further failure, up to ``max_s``. While locked nothing is
    checked, so nothing counts either: a guesser pays at most one attempt per lock.
    A key is forgotten ``forget_s`` after its last failure or lock, whichever is later.
    The table is bounded (least recently failed go first), so a spray of keys costs
    memory only up to ``max_entries``.
    """

    def __init__(
        self,
        free: int,
        base_s: float,
        max_s: float,
        *,
        forget_s: float = 900.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._free = free
        self._base = base_s
        self._max = max_s
        self._forget = forget_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _Failures] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _current(self, key: str, now: float) -> _Failures | None:
        entry = self._entries.get(key)
        if entry is not None and now > max(entry.last, entry.locked_until) + self._forget:
            del self._entries[key]
            return None
        return entry

    def retry_after(self, key: str) -> float:
        """Seconds ``key`` stays locked; 0 when it is not."""
        now = self._clock()
        entry = self._current(key, now)
        return max(0.0, entry.locked_until - now) if entry is not None else 0.0

    def failed(self, key: str) -> float:
        """Count a failure; the lock it starts, in seconds (0 while still within the free ones)."""
        now = self._clock()
        entry = self._current(key, now) or _Failures(0, 0.0, now)
        entry.count += 1
        entry.last = now
        lock = 0.0
        # Failures 1..free are free; the one after them is the first to lock.
        if entry.count > self._free:
            lock = min(self._max, self._base * 2.0 ** min(entry.count - self._free - 1, 62))
            entry.locked_until = now + lock
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return lock

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)


class LoginThrottle:
    """Failed charger logins, throttled per identity and per source address.

    Per identity: a guesser of one charger's password is slowed down exponentially
    whatever address it comes from. Per address (optional; off behind a balancer that
    hides client addresses, where every charger would share one): a guesser spraying
    many identities, or scanning for them, is slowed down too. A success clears the
    identity's count, never the address's (one valid charger must not launder a
    guesser's failures from the same NAT).
    """

    def __init__(
        self,
        *,
        identity_free: int,
        address_free: int,
        base_s: float,
        max_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._identities = FailureLockout(identity_free, base_s, max_s, clock=clock)
        self._addresses = FailureLockout(address_free, base_s, max_s, clock=clock) if address_free > 0 else None

    def retry_after(self, identity: str, address: str | None) -> float:
        """How long this login must wait (0: go ahead); checked before any read or hash."""
        wait = self._identities.retry_after(identity)
        if self._addresses is not None and address is not None:
            wait = max(wait, self._addresses.retry_after(address))
        return wait

    def unknown_identity(self, address: str | None) -> None:
        """A login for an identity that is not registered: counts against the address only."""
        if self._addresses is not None and address is not None:
            self._addresses.failed(address)

    def failed(self, identity: str, address: str | None) -> None:
        self._identities.failed(identity)
        self.unknown_identity(address)

    def succeeded(self, identity: str) -> None:
        self._identities.forget(identity)


# -- connect storms ---------------------------------------------------------------------------


class HandshakeGate:
    """How many opening handshakes run at once, and when a refused charger should come back.

    A fleet reconnecting after a gateway restart arrives at once, and each handshake
    waits for a registry read and maybe a scrypt check on bounded thread pools. Unbounded,
    the late arrivals queue behind the early ones until websockets' open timeout drops
    them without an answer: the charger sees a broken handshake, not a reason. Past
    ``limit`` handshakes in progress the gateway answers 503 at once, at no I/O cost,
    with a Retry-After that spreads the refused chargers over the time the gateway needs
    to admit them: the recent refusals over the rate handshakes complete, drawn
    uniformly from 1 s to that (at most ``max_retry_s``) so that the retries do not
    arrive together again.

    Both are counted with exponential decay (time constant ``window_s``, O(1) per
    event), the rate normalised by how long the current busy period has lasted so it is
    right from the storm's first second. It is never taken below ``limit / budget_s``:
    every handshake ends within its budget, so the gate turns over at least that fast.
    """

    def __init__(
        self,
        limit: int,
        budget_s: float,
        *,
        window_s: float = 10.0,
        max_retry_s: int = 60,
        clock: Callable[[], float] = time.monotonic,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.limit = limit
        self._floor_per_s = limit / budget_s
        self._window = window_s
        self._max_retry = max_retry_s
        self._clock = clock
        self._draw = draw
        self.in_progress = 0
        self._completed = 0.0
        self._refused = 0.0
        self._since = self._busy_since = clock()
        #: Refusals not yet logged: a storm is logged as a count, not a line per charger.
        self._unreported = 0
        self._reported_at = -math.inf

    def _decay(self) -> float:
        now = self._clock()
        factor = math.exp(-(now - self._since) / self._window)
        self._completed *= factor
        self._refused *= factor
        if self._completed + self._refused < 0.01:
            self._busy_since = now
        self._since = now
        return now

    def enter(self) -> bool:
        """Take a place for a handshake; False when ``limit`` are in progress already."""
        if self.in_progress >= self.limit:
            return False
        self.in_progress += 1
        return True

    def leave(self) -> None:
        """A handshake that entered is over, whatever its outcome."""
        self.in_progress -= 1
        self._decay()
        self._completed += 1

    def completed_per_s(self) -> float:
        now = self._decay()
        # What a steady rate r since the busy period began adds up to: r * span.
        span = self._window * -math.expm1(-(now - self._busy_since) / self._window)
        measured = self._completed / span if span > 0 else 0.0
        return max(measured, self._floor_per_s)

    def refuse(self) -> int:
        """Count a refused charger; the seconds it should wait before trying again."""
        per_s = self.completed_per_s()
        self._refused += 1
        self._unreported += 1
        spread = min(float(self._max_retry), max(1.0, self._refused / per_s))
        return round(1.0 + self._draw() * (spread - 1.0))

    def due_report(self, every_s: float) -> int:
        """The refusals to log now (0 if the last report is under ``every_s`` old)."""
        now = self._clock()
        if not self._unreported or now - self._reported_at < every_s:
            return 0
        count, self._unreported, self._reported_at = self._unreported, 0, now
        return count
