"""The home of the opening handshake: who gets a charger connection, and where its password is checked.

``process_request`` runs before the WebSocket upgrade: health checks, the identity in
the path, the failed-login throttle, the gate that bounds handshakes in progress, the
registry lookup, the password check (scrypt on its own threads, remembered once it
verified), and the subprotocol. It leaves an ``Admission`` for the connection handler
(``connections.py``), or answers 404 / 401 / 429 / 503 itself. The pure decisions it
takes are in ``admission.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit
from weakref import WeakKeyDictionary

from websockets.datastructures import Headers
from websockets.exceptions import InvalidHeader
from websockets.headers import parse_authorization_basic, parse_subprotocol
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from evreserve import client_certs
from evreserve.errors import DependencyUnavailable
from evreserve.models import Charger, utcnow
from evreserve.security import hash_password, needs_rehash
from evreserve.storage.registry import RegistryStore

from .admission import Admission, HandshakeGate, LoginThrottle, address_key, choose_version, identity_from_path
from .offload import Offload
from .settings import GatewaySettings
from .transport import Opening

log = logging.getLogger("evreserve_gateway")

HEALTH_PATH = "/health"
#: How often a connect storm's refusals are logged (as a count).
STORM_LOG_EVERY_S = 10.0


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


class Handshake:
    """The opening handshakes of one gateway instance (``process_request`` and ``select_subprotocol``)."""

    def __init__(
        self,
        settings: GatewaySettings,
        registry: RegistryStore,
        io: Offload,
        auth: Offload,
        verify_password: Callable[[str, str], bool],
        stopping: asyncio.Event,
        *,
        chargers: Callable[[], int],
        commands_in_flight: Callable[[], int],
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._io = io
        self._auth = auth
        self._verify_password = verify_password
        self._stopping = stopping
        #: For the health check: the chargers held, the commands running.
        self._chargers = chargers
        self._commands_in_flight = commands_in_flight
        self._passwords = VerifiedPasswords()
        self._throttle = LoginThrottle(
            identity_free=settings.gateway_login_failures_per_identity,
            address_free=settings.gateway_login_failures_per_address,
            base_s=settings.gateway_login_lockout_base_s,
            max_s=settings.gateway_login_lockout_max_s,
        )
        #: Identities with a scrypt check running: parallel guesses must not all get
        #: checked before the first failure is counted.
        self._verifying: set[str] = set()
        self._checks: set[asyncio.Task[bool]] = set()
        #: Password hashes being upgraded after a login (``_upgrade``).
        self._upgrades: set[asyncio.Task[None]] = set()
        self._gate = HandshakeGate(settings.gateway_max_handshakes, settings.gateway_handshake_timeout_s)
        self._admissions: WeakKeyDictionary[Opening, Admission] = WeakKeyDictionary()

    def admission(self, connection: Opening | None) -> Admission | None:
        """What ``process_request`` decided for this connection (once: the handler takes it)."""
        return None if connection is None else self._admissions.pop(connection, None)

    async def process_request(self, connection: Opening, request: Request) -> Response | None:
        if is_health_check(request):
            return self._health(connection)
        identity = identity_from_path(request.path)
        if identity is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "Chargers connect to /ocpp/{identity}.\n")
        if self._stopping.is_set():
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "Restarting; connect again.\n")
        address = address_key(connection.remote_address[0] if connection.remote_address else None)
        # Locked out: no registry read and no scrypt, so a guesser costs almost nothing.
        wait = self._throttle.retry_after(identity, address)
        if wait > 0:
            return _too_many(connection, wait)
        if not self._gate.enter():
            return self._busy(connection)
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._settings.gateway_handshake_timeout_s):
                return await self._admit(connection, request, identity, address)
        except TimeoutError:
            log.warning(
                "handshake over its time budget; asked the charger to retry",
                extra={"charger": identity, "handshakesInProgress": self._gate.in_progress},
            )
            return self._busy(connection)
        except asyncio.CancelledError:
            # websockets gave up on the handshake (its open timeout) or the server stops.
            log.warning(
                "handshake abandoned",
                extra={"charger": identity, "elapsedS": round(time.monotonic() - started, 3)},
            )
            raise
        finally:
            self._gate.leave()

    async def _admit(
        self, connection: Opening, request: Request, identity: str, address: str | None
    ) -> Response | None:
        try:
            charger = await self._io(self._registry.get_charger_by_ocpp_id, identity)
        except DependencyUnavailable:
            log.exception("registry unreachable during a handshake", extra={"charger": identity})
            response = connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "Try again later.\n")
            response.headers["Retry-After"] = str(self._gate.refuse())
            return response
        # The identity is global: it points at exactly one charger of one account. A
        # record that does not name this identity (a pointer left stale) admits nobody.
        if charger is None or charger.ocpp_id != identity:
            log.info("refused an unknown charger", extra={"charger": identity})
            self._throttle.unknown_identity(address)
            return connection.respond(HTTPStatus.NOT_FOUND, "Unknown charger.\n")
        if charger.security_profile == 3:
            # The certificate, never a password: a profile 3 charger cannot log in with one.
            verdict: bool | None = self._certified(connection, charger)
        else:
            verdict = await self._authenticated(charger, request.headers.get_all("Authorization"))
        if verdict is None:
            # The same identity's password is being checked (an earlier attempt of this
            # charger, or a guesser): no second scrypt in parallel.
            return _too_many(connection, 1.0)
        if not verdict:
            log.warning("refused a charger's credentials", extra={"charger": identity, "peer": address})
            self._throttle.failed(identity, address)
            response = connection.respond(HTTPStatus.UNAUTHORIZED, "Invalid credentials.\n")
            response.headers["WWW-Authenticate"] = 'Basic realm="ocpp", charset="UTF-8"'
            return response
        self._throttle.succeeded(identity)
        try:
            offered = _offered_subprotocols(request.headers)
        except InvalidHeader:
            return connection.respond(HTTPStatus.BAD_REQUEST, "Malformed Sec-WebSocket-Protocol.\n")
        version = choose_version(offered, charger.ocpp_version)
        self._admissions[connection] = Admission(charger.id, charger.account_id, charger.ocpp_id, version)
        return None

    # -- the certificate check (security profile 3) ----------------------------------------

    def _certified(self, connection: Opening, charger: Charger) -> bool:
        """Whether the TLS client certificate (verified by the handshake: chain, dates) is this charger's."""
        if charger.client_certificate is None:
            return False  # a profile 3 entry without its rule admits nobody
        transport = connection.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        reason = client_certs.refusal(charger.ocpp_id, charger.client_certificate, der, utcnow())
        if reason is not None:
            log.warning("refused a charger's certificate", extra={"charger": charger.ocpp_id, "reason": reason})
        return reason is None

    # -- the password check -------------------------------------------------------------

    async def _authenticated(self, charger: Charger, headers: list[str]) -> bool | None:
        """Whether the credentials are the charger's; ``None`` when a check for it is already running.

        Two Authorization headers are not credentials: which one would count? Refused,
        and counted as a failed login like any other wrong answer.
        """
        if not headers:
            return charger.allow_no_password
        if len(headers) > 1:
            return False
        try:
            username, password = parse_authorization_basic(headers[0])
        except InvalidHeader:
            return False
        if username != charger.ocpp_id:
            return False
        if charger.password_hash is None:
            return charger.allow_no_password
        if self._passwords.known(charger, password):
            return True
        if charger.ocpp_id in self._verifying:
            return None
        self._verifying.add(charger.ocpp_id)
        check = asyncio.get_running_loop().create_task(self._verify(charger, password, charger.password_hash))
        self._checks.add(check)
        check.add_done_callback(self._checks.discard)
        # Shielded: a handshake out of time leaves the check to finish, so the charger's
        # retry finds its password verified instead of paying scrypt again.
        return await asyncio.shield(check)

    async def _verify(self, charger: Charger, password: str, password_hash: str) -> bool:
        try:
            ok = await self._auth(self._verify_password, password, password_hash)
        finally:
            self._verifying.discard(charger.ocpp_id)
        if ok:
            self._passwords.remember(charger, password)
            if needs_rehash(password_hash):
                upgrade = asyncio.get_running_loop().create_task(self._upgrade(charger, password, password_hash))
                self._upgrades.add(upgrade)
                upgrade.add_done_callback(self._upgrades.discard)
        return ok

    async def _upgrade(self, charger: Charger, password: str, old: str) -> None:
        """Store the verified password's hash in the current scheme (Argon2id) in place of an older one."""
        try:
            new = await self._auth(hash_password, password)
            upgraded = await self._io(self._registry.upgrade_password_hash, charger.id, old, new)
        except Exception:
            log.exception("could not upgrade a charger's password hash", extra={"charger": charger.ocpp_id})
            return
        if upgraded:
            log.info("upgraded a charger's password hash to Argon2id", extra={"charger": charger.ocpp_id})

    # -- answers --------------------------------------------------------------------------

    def _busy(self, connection: Opening) -> Response:
        """503 with a Retry-After that spreads a connect storm's retries (see ``HandshakeGate``)."""
        retry_s = self._gate.refuse()
        refused = self._gate.due_report(STORM_LOG_EVERY_S)
        if refused:
            log.warning(
                "connect storm: refused handshakes with 503 + Retry-After",
                extra={"refused": refused, "handshakesInProgress": self._gate.in_progress, "retryAfterS": retry_s},
            )
        response = connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "Busy; connect again after Retry-After.\n")
        response.headers["Retry-After"] = str(retry_s)
        return response

    def select_subprotocol(self, connection: Opening, offered: Any) -> Subprotocol | None:
        # Returning None completes the handshake without a subprotocol; the handler then
        # closes it if no version was agreed (OCPP-J 3.2), or speaks the registry's one.
        admission = self._admissions.get(connection)
        if admission is None or admission.version is None:
            return None
        chosen = admission.version.subprotocol
        return Subprotocol(chosen) if chosen in offered else None

    def _health(self, connection: Opening) -> Response:
        stopping = self._stopping.is_set()
        status = HTTPStatus.SERVICE_UNAVAILABLE if stopping else HTTPStatus.OK
        body = {
            "status": "stopping" if stopping else "ok",
            "instanceId": self._settings.instance_id,
            "chargers": self._chargers(),
            "commandsInFlight": self._commands_in_flight(),
            "handshakesInProgress": self._gate.in_progress,
        }
        response = connection.respond(status, json.dumps(body) + "\n")
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        return response


def is_health_check(request: Request) -> bool:
    return urlsplit(request.path).path == HEALTH_PATH


def _too_many(connection: Opening, wait_s: float) -> Response:
    response = connection.respond(HTTPStatus.TOO_MANY_REQUESTS, "Too many failed logins; try again later.\n")
    response.headers["Retry-After"] = str(max(1, math.ceil(wait_s)))
    return response


def _offered_subprotocols(headers: Headers) -> list[str]:
    offered: list[str] = []
    for value in headers.get_all("Sec-WebSocket-Protocol"):
        offered.extend(parse_subprotocol(value))
    return offered
