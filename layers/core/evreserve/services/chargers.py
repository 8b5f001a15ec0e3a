"""Registering and managing chargers and their ports (the registry ``portId`` refers to)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from ..errors import DependencyUnavailable, InvalidRequest, NotFound
from ..models import Charger, ClientCertificate, ConnectionState, Port, utcnow
from ..requests import ChargerChanges, ClientCertificateInput, NewCharger, NewPort, PortChanges
from ..security import generate_password, hash_password
from ..storage.paging import Page
from ..storage.registry import RegistryStore
from .principal import Principal

if TYPE_CHECKING:
    from ..channel import CloseSession

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Registered:
    charger: Charger
    #: The generated password, to show once; ``None`` when the caller chose one.
    generated_password: str | None


#: ``(queue URL of the instance holding the charger, what to close)``: the command channel's
#: ``close_session`` on an SQS client, built when first needed.
SessionCloser = Callable[[str, "CloseSession"], None]


class ChargerService:
    def __init__(
        self,
        registry: RegistryStore,
        clock: Callable[[], datetime] = utcnow,
        close_session: SessionCloser | None = None,
    ) -> None:
        self._registry = registry
        self._clock = clock
        self._close_session = close_session

    def _end_session(self, charger: Charger, reason: str) -> None:
        """Close the charger's live session, wherever it is held: its credentials no longer stand.

        The change itself is stored already; if SQS cannot be reached the session stays
        until the charger reconnects (and then meets the new credentials). Logged, not
        raised: the caller's change did happen.
        """
        conn = charger.connection
        if self._close_session is None or conn is None or conn.state is not ConnectionState.CONNECTED:
            return
        # Imported here: the chargers function loads the command channel only to close a session.
        from ..channel import CloseSession

        request = CloseSession(charger_id=charger.id, session_id=conn.session_id, reason=reason)
        try:
            self._close_session(conn.queue_url, request)
        except DependencyUnavailable:
            log.warning("could not ask the gateway to close a session", extra={"chargerId": charger.id})

    def _port(self, data: NewPort) -> Port:
        return Port(
            id=self._registry.next_id("port"),
            port_number=data.port_number,
            name=data.name,
            connector_type=data.connector_type,
            maximum_power_kw=data.maximum_power_kw,
        )

    def register(self, principal: Principal, request: NewCharger) -> Registered:
        account_id = principal.require_whole_account()
        certificate = _certificate_rule(request.security_profile, request.client_certificate)
        if certificate is not None and request.password is not None:
            raise InvalidRequest("a security profile 3 charger authenticates with its certificate", field="password")
        generated = generate_password() if request.password is None and certificate is None else None
        password = request.password or generated
        now = self._clock()
        charger = Charger(
            id=self._registry.next_id("charger"),
            account_id=account_id,
            ocpp_id=request.ocpp_id,
            external_id=request.external_id,
            serial_number=request.serial_number,
            ocpp_version=request.ocpp_version,
            password_hash=hash_password(password) if password is not None else None,
            security_profile=request.security_profile,
            client_certificate=certificate,
            ports=tuple(self._port(p) for p in request.ports),
            created_at=now,
            updated_at=now,
        )
        self._registry.create_charger(charger)
        return Registered(charger, generated)

    def get(self, principal: Principal, charger_id: int) -> Charger:
        charger = self._registry.get_charger(charger_id)
        if charger is None or not principal.may_access_charger(charger.account_id, charger.id):
            raise NotFound("Charger not found")
        return charger

    def list_chargers(
        self,
        principal: Principal,
        *,
        limit: int,
        cursor: str | None,
        ocpp_id: str | None = None,
        external_id: str | None = None,
    ) -> Page[Charger]:
        """The caller's chargers in id order; ``ocppId`` / ``externalId`` look one up."""
        account_id = principal.require_account()
        if ocpp_id is not None or external_id is not None:
            return Page(self._lookup(principal, account_id, ocpp_id, external_id), None)
        return self._registry.page_chargers(
            account_id,
            limit=limit,
            cursor=cursor,
            keep=lambda c: principal.may_access_charger(c.account_id, c.id),
            selective=principal.charger_ids is not None,
        )

    def _lookup(
        self, principal: Principal, account_id: int, ocpp_id: str | None, external_id: str | None
    ) -> list[Charger]:
        ids: set[int] = set()
        if ocpp_id is not None:
            found = self._registry.charger_id_for_ocpp_id(ocpp_id)
            if found is None:
                return []
            ids.add(found)
        if external_id is not None:
            found = self._registry.charger_id_for_external_id(account_id, external_id)
            if found is None:
                return []
            ids.add(found)
        if len(ids) != 1:
            return []  # both given, naming different chargers
        charger = self._registry.get_charger(ids.pop())
        if charger is None or not principal.may_access_charger(charger.account_id, charger.id):
            return []
        return [charger]

    def update(self, principal: Principal, charger_id: int, request: ChargerChanges) -> Charger:
        charger = self.get(principal, charger_id)
        given = request.given
        changes: dict[str, object] = {"updated_at": self._clock()}
        if "ocpp_version" in given:
            changes["ocpp_version"] = request.ocpp_version
        if "external_id" in given:
            changes["external_id"] = request.external_id
        if "serial_number" in given:
            changes["serial_number"] = request.serial_number
        if "password" in given:
            if request.password is None:
                raise InvalidRequest("password cannot be cleared; send a new one", field="password")
            changes["password_hash"] = hash_password(request.password)
        credentials = {"password", "security_profile", "client_certificate"} & given
        if {"security_profile", "client_certificate"} & given:
            profile = request.security_profile if "security_profile" in given else charger.security_profile
            if profile is None:
                raise InvalidRequest("securityProfile cannot be cleared", field="securityProfile")
            if profile == 3 and "client_certificate" not in given:
                rule = charger.client_certificate  # keeps the one registered
                if rule is None:
                    raise InvalidRequest("security profile 3 needs clientCertificate", field="clientCertificate")
            else:
                rule = _certificate_rule(profile, request.client_certificate)
            changes["security_profile"], changes["client_certificate"] = profile, rule
            if profile != 3 and "password_hash" not in changes and charger.password_hash is None:
                raise InvalidRequest("security profiles 1 and 2 need a password; send one", field="password")
        updated = charger.model_copy(update=changes)
        self._registry.update_charger(charger, updated)
        if credentials:
            self._end_session(charger, "the charger's credentials changed")
        return updated

    def delete(self, principal: Principal, charger_id: int) -> None:
        principal.require_whole_account()
        charger = self.get(principal, charger_id)
        self._registry.delete_charger(charger)
        self._end_session(charger, "the charger was deleted")

    # -- ports ---------------------------------------------------------------------------

    def add_port(self, principal: Principal, charger_id: int, request: NewPort) -> tuple[Charger, Port]:
        charger = self.get(principal, charger_id)
        if charger.port_by_number(request.port_number) is not None:
            raise InvalidRequest(f"portNumber {request.port_number} already exists on this charger", field="portNumber")
        port = self._port(request)
        updated = charger.model_copy(update={"ports": (*charger.ports, port), "updated_at": self._clock()})
        self._registry.update_charger(charger, updated)
        return updated, port

    def update_port(
        self, principal: Principal, charger_id: int, port_id: int, request: PortChanges
    ) -> tuple[Charger, Port]:
        charger = self.get(principal, charger_id)
        port = charger.port_by_id(port_id)
        if port is None:
            raise NotFound("Port not found")
        given = request.given
        changes: dict[str, object] = {}
        if "port_number" in given:
            if request.port_number is None:
                raise InvalidRequest("portNumber cannot be cleared", field="portNumber")
            other = charger.port_by_number(request.port_number)
            if other is not None and other.id != port.id:
                raise InvalidRequest(
                    f"portNumber {request.port_number} already exists on this charger", field="portNumber"
                )
            changes["port_number"] = request.port_number
        for name in ("name", "connector_type", "maximum_power_kw"):
            if name in given:
                changes[name] = getattr(request, name)
        new_port = port.model_copy(update=changes)
        ports = tuple(new_port if p.id == port.id else p for p in charger.ports)
        updated = charger.model_copy(update={"ports": ports, "updated_at": self._clock()})
        self._registry.update_charger(charger, updated)
        return updated, new_port

    def delete_port(self, principal: Principal, charger_id: int, port_id: int) -> None:
        charger = self.get(principal, charger_id)
        if charger.port_by_id(port_id) is None:
            raise NotFound("Port not found")
        ports = tuple(p for p in charger.ports if p.id != port_id)
        self._registry.update_charger(charger, charger.model_copy(update={"ports": ports, "updated_at": self._clock()}))


def _certificate_rule(profile: int, given: ClientCertificateInput | None) -> ClientCertificate | None:
    """The stored rule for a profile: 3 needs a client certificate's CA, 1 and 2 take none."""
    if profile != 3:
        if given is not None:
            raise InvalidRequest("clientCertificate is for security profile 3 only", field="clientCertificate")
        return None
    if given is None:
        raise InvalidRequest("security profile 3 needs clientCertificate", field="clientCertificate")
    # Imported here: only registrations of profile 3 chargers load cryptography.
    from .. import client_certs

    return ClientCertificate(
        ca_pem=client_certs.check_ca(given.ca_certificate),
        fingerprint_sha256=(
            client_certs.normalize_fingerprint(given.certificate_fingerprint)
            if given.certificate_fingerprint is not None
            else None
        ),
    )
