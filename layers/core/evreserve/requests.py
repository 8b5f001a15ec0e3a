"""What callers ask of the services, in the domain's terms.

The services take these, never the API's wire shapes: those are the Lambda side's
(``evreserve_lambda.schemas``), which validates a request body and turns it into one of
these (``to_domain()``). Values here are already valid; the services check only what
needs the stored state (a port number taken, a reservationId active elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .access_ids import AuthorizationStatus, TokenType
from .models import IdTokenType, OcppVersion, UnknownTokenPolicy


@dataclass(frozen=True, slots=True)
class ReserveRequest:
    """``port_id`` reserves that port; ``charger_id`` (instead) the charger as a whole."""

    port_id: int | None
    expiry_date: datetime
    id_tag: str
    reservation_id: int
    parent_id_tag: str | None = None
    id_token_type: IdTokenType | None = None
    charger_id: int | None = None


@dataclass(frozen=True, slots=True)
class CancelRequest:
    charger_id: int
    reservation_id: int


@dataclass(frozen=True, slots=True)
class NewPort:
    port_number: int
    name: str | None = None
    connector_type: str | None = None
    maximum_power_kw: float | None = None


@dataclass(frozen=True, slots=True)
class NewCharger:
    ocpp_id: str
    ports: tuple[NewPort, ...]
    ocpp_version: OcppVersion | None = None
    #: ``None``: the service generates one and returns it once.
    password: str | None = None
    external_id: str | None = None
    serial_number: str | None = None
    security_profile: int = 2
    #: Security profile 3: the CA (PEM) and, optionally, the one certificate's SHA-256.
    client_certificate: ClientCertificateInput | None = None


@dataclass(frozen=True, slots=True)
class ClientCertificateInput:
    ca_certificate: str
    certificate_fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class ChargerChanges:
    """Only the fields named in ``given`` change; ``None`` there clears an optional one."""

    given: frozenset[str]
    security_profile: int | None = None
    client_certificate: ClientCertificateInput | None = None
    ocpp_version: OcppVersion | None = None
    password: str | None = None
    external_id: str | None = None
    serial_number: str | None = None


@dataclass(frozen=True, slots=True)
class PortChanges:
    """Only the fields named in ``given`` change; ``None`` there clears an optional one."""

    given: frozenset[str]
    port_number: int | None = None
    name: str | None = None
    connector_type: str | None = None
    maximum_power_kw: float | None = None


@dataclass(frozen=True, slots=True)
class NewAccount:
    name: str


@dataclass(frozen=True, slots=True)
class AccountChanges:
    """``None``: unchanged."""

    name: str | None = None
    unknown_id_tags: UnknownTokenPolicy | None = None


@dataclass(frozen=True, slots=True)
class NewApiKey:
    name: str
    #: Limit the key to these chargers of the account; ``None``: all of them.
    charger_ids: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class NewAccessId:
    ocpp_id_tag: str
    type: TokenType
    authorization_status: AuthorizationStatus = AuthorizationStatus.AUTHORIZED
    parent_id_tag: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class AccessIdChanges:
    """Only the fields named in ``given`` change; ``None`` there clears ``parent_id_tag`` or ``name``."""

    given: frozenset[str]
    type: TokenType | None = None
    authorization_status: AuthorizationStatus | None = None
    parent_id_tag: str | None = None
    name: str | None = None
