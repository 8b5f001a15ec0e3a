"""Who may open a charger connection, and in which OCPP version: the decisions, apart from I/O."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from evreserve.models import Charger, OcppVersion

OCPP_PATH_PREFIX = "/ocpp/"
#: OCPP 2.0.1 caps the identity at 48 characters; 1.6's chargeBoxIdentity is shorter still.
MAX_IDENTITY_LENGTH = 48
#: When a charger offers several versions and the registry does not pin one.
PREFERENCE = (OcppVersion.V201, OcppVersion.V16)


def identity_from_path(path: str) -> str | None:
    """The percent-decoded station identity of ``/ocpp/{identity}``, or ``None`` if the path is not one.

    Identities with ``:`` (Basic auth's separator, A00.FR.204), ``/``, control
    characters or surrounding blanks are refused rather than guessed at.
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
    if (
        len(identity) > MAX_IDENTITY_LENGTH
        or identity != identity.strip()
        or any(c in ":/" or unicodedata.category(c).startswith("C") for c in identity)
    ):
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


class VerifiedPasswords:
    """Remembers passwords that verified, so a reconnect storm does not pay scrypt per charger.

    Entries hold an HMAC of the password under a per-process random key, never the
    password, and are bound to the stored hash: a changed password invalidates them.
    Only successes are cached; failures always pay the full price.
    """

    def __init__(self, max_entries: int = 100_000, ttl_s: float = 3600.0) -> None:
        self._key = secrets.token_bytes(32)
        self._max = max_entries
        self._ttl = ttl_s
        self._entries: OrderedDict[tuple[int, str], tuple[bytes, float]] = OrderedDict()

    def _mac(self, password: str) -> bytes:
        return hmac.new(self._key, password.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    def known(self, charger: Charger, password: str) -> bool:
        if charger.password_hash is None:
            return False
        entry = self._entries.get((charger.id, charger.password_hash))
        if entry is None:
            return False
        mac, expires = entry
        if expires < time.monotonic():
            del self._entries[(charger.id, charger.password_hash)]
            return False
        return hmac.compare_digest(mac, self._mac(password))

    def remember(self, charger: Charger, password: str) -> None:
        if charger.password_hash is None:
            return
        key = (charger.id, charger.password_hash)
        self._entries[key] = (self._mac(password), time.monotonic() + self._ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
