"""The public API's request bodies, camelCase on the wire (the responses: ``responses``).

They belong to the Lambda side: a handler validates a body with one of these and hands
the services its domain request (``to_domain()``, ``evreserve.requests``); the services
never see these classes.

The reservation shapes are fixed by ``shared/spec/reservations-api.md`` (a partner's
existing client must work unchanged); the others follow the API family's conventions.
Python attributes are snake_case; ``alias_generator`` gives every field its camelCase
wire name, and the handlers serialize by alias.

Validation decisions the upstream spec leaves open:

* **Unknown fields are rejected** (400): a typo such as ``expiryDat`` must not silently
  create a reservation without the field the caller meant to send.
* **Integers are strict**: ``"34"``, ``34.5`` and ``true`` are not port ids; every id
  fits OCPP's signed 32-bit integer.
* **Datetimes** must be ISO 8601 strings *with* an offset (``Z`` or ``+02:00``): a
  naive time would be read in an unknown zone by the charger.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from evreserve import requests
from evreserve.access_ids import MAX_NAME_LENGTH, AuthorizationStatus, TokenType
from evreserve.events import EventType
from evreserve.models import (
    INT32_MAX,
    OCPP_ID_PATTERN,
    IdTokenType,
    OcppVersion,
    UnknownTokenPolicy,
    utcnow,
)
from evreserve.webhooks import MAX_DESCRIPTION_LENGTH, MAX_URL_LENGTH, NewWebhook

#: OCPP IdToken: CiString20 (1.6). Printable ASCII only, as OCPP's CiString is.
_PRINTABLE = r"^[\x20-\x7e]+$"


def _iso_string(value: Any) -> Any:
    # pydantic would also accept a number of seconds since the epoch; the API takes
    # ISO 8601 strings only, as documented.
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date-time string, e.g. 2026-04-01T14:00:00.000Z")
    return value


Int32Id = Annotated[int, Field(strict=True, ge=1, le=INT32_MAX)]
ReservationIdField = Annotated[int, Field(strict=True, ge=0, le=INT32_MAX)]
IsoInstant = Annotated[AwareDatetime, BeforeValidator(_iso_string)]
IdTagField = Annotated[str, Field(strict=True, min_length=1, max_length=20, pattern=_PRINTABLE)]


class ApiModel(BaseModel):
    """Base of every wire shape: camelCase aliases, unknown fields rejected."""

    # defer_build: each function module imports every shape of the API but uses a few;
    # its validator is built on first use (about 1 ms for a route's shapes), not at import.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, defer_build=True
    )


# -- reservations (shapes fixed by the spec) --------------------------------------------------


class ReserveRequest(ApiModel):
    """The spec's body; ``chargerId`` instead of ``portId`` reserves the charger as a whole (an extension).

    ``portId`` stays required as the spec has it (a body with neither names it missing); a
    body with ``chargerId`` may leave it out or send it ``null``.
    """

    port_id: Int32Id | None
    charger_id: Int32Id | None = None
    expiry_date: IsoInstant
    id_tag: IdTagField
    reservation_id: ReservationIdField
    parent_id_tag: IdTagField | None = None
    id_token_type: IdTokenType | None = None

    @field_validator("expiry_date")
    @classmethod
    def _in_future(cls, value: datetime) -> datetime:
        try:
            # In UTC from here on: the same instant whatever offset the caller wrote.
            value = value.astimezone(UTC)
        except OverflowError:
            # e.g. 9999-12-31T23:59:59-23:59, which is in the year 10000 in UTC.
            raise ValueError("is out of range") from None
        if value <= utcnow():
            raise ValueError("must be in the future")
        return value

    @model_validator(mode="before")
    @classmethod
    def _charger_instead_of_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and "chargerId" in data and "portId" not in data:
            return {**data, "portId": None}
        return data

    @model_validator(mode="after")
    def _one_place(self) -> ReserveRequest:
        if (self.port_id is None) == (self.charger_id is None):
            raise ValueError("give exactly one of portId (a port) and chargerId (the charger as a whole)")
        return self

    def to_domain(self) -> requests.ReserveRequest:
        return requests.ReserveRequest(
            port_id=self.port_id,
            charger_id=self.charger_id,
            expiry_date=self.expiry_date,
            id_tag=self.id_tag,
            reservation_id=self.reservation_id,
            parent_id_tag=self.parent_id_tag,
            id_token_type=self.id_token_type,
        )


class CancelRequest(ApiModel):
    charger_id: Int32Id
    reservation_id: ReservationIdField

    def to_domain(self) -> requests.CancelRequest:
        return requests.CancelRequest(charger_id=self.charger_id, reservation_id=self.reservation_id)


# -- chargers and ports --------------------------------------------------------------------


#: A port's power: at least a watt. A bare ``gt=0`` let 5e-324 through, a number DynamoDB
#: cannot store (its exponent is below -128): the write failed with a 500.
PowerKw = Annotated[float, Field(ge=0.001, le=10_000)]


class PortInput(ApiModel):
    port_number: Int32Id
    name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    connector_type: Annotated[str, Field(min_length=1, max_length=50)] | None = None
    maximum_power_kw: PowerKw | None = None

    def to_domain(self) -> requests.NewPort:
        return requests.NewPort(
            port_number=self.port_number,
            name=self.name,
            connector_type=self.connector_type,
            maximum_power_kw=self.maximum_power_kw,
        )


class PortUpdate(ApiModel):
    """Fields to change on a port; ``null`` clears an optional one."""

    port_number: Int32Id | None = None
    name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    connector_type: Annotated[str, Field(min_length=1, max_length=50)] | None = None
    maximum_power_kw: PowerKw | None = None

    def to_domain(self) -> requests.PortChanges:
        return requests.PortChanges(
            given=frozenset(self.model_fields_set),
            port_number=self.port_number,
            name=self.name,
            connector_type=self.connector_type,
            maximum_power_kw=self.maximum_power_kw,
        )


Password = Annotated[str, Field(min_length=16, max_length=40, pattern=_PRINTABLE)]
ExternalId = Annotated[str, Field(min_length=1, max_length=100, pattern=_PRINTABLE)]
SerialNumber = Annotated[str, Field(min_length=1, max_length=100)]


def _unique_port_numbers(ports: list[PortInput]) -> list[PortInput]:
    numbers = [p.port_number for p in ports]
    if len(set(numbers)) != len(numbers):
        raise ValueError("portNumber values must be unique within a charger")
    return ports


SecurityProfile = Literal[1, 2, 3]


class ClientCertificateInput(ApiModel):
    """Security profile 3: the CA that issues the charger's certificate, and optionally the one certificate."""

    #: PEM; checked to be one CA certificate by the service.
    ca_certificate: Annotated[str, Field(min_length=1, max_length=16_384)]
    #: SHA-256 of the one certificate admitted (hex, colons allowed); omitted: any
    #: certificate of the CA whose subject CN is the charger's ocppId.
    certificate_fingerprint: Annotated[str, Field(min_length=64, max_length=95)] | None = None

    def to_domain(self) -> requests.ClientCertificateInput:
        return requests.ClientCertificateInput(self.ca_certificate, self.certificate_fingerprint)


class ChargerCreate(ApiModel):
    ocpp_id: Annotated[str, Field(pattern=OCPP_ID_PATTERN)]
    ocpp_version: OcppVersion | None = None
    #: OCPP's Basic-auth password (16-40 characters). Omitted: one is generated and
    #: returned once in the response (not for security profile 3, which has none).
    password: Password | None = None
    external_id: ExternalId | None = None
    serial_number: SerialNumber | None = None
    ports: Annotated[list[PortInput], Field(min_length=1, max_length=64)]
    #: 1 or 2: the password (2: over TLS); 3: a TLS client certificate (clientCertificate).
    security_profile: SecurityProfile = 2
    client_certificate: ClientCertificateInput | None = None

    _ports_unique = field_validator("ports")(_unique_port_numbers)

    def to_domain(self) -> requests.NewCharger:
        return requests.NewCharger(
            ocpp_id=self.ocpp_id,
            ports=tuple(p.to_domain() for p in self.ports),
            ocpp_version=self.ocpp_version,
            password=self.password,
            external_id=self.external_id,
            serial_number=self.serial_number,
            security_profile=self.security_profile,
            client_certificate=self.client_certificate.to_domain() if self.client_certificate else None,
        )


class ChargerUpdate(ApiModel):
    """Fields to change; absent fields stay, ``null`` clears an optional one.

    ``ocppId`` cannot change: it is the identity the charger connects with.
    """

    ocpp_version: OcppVersion | None = None
    password: Password | None = None
    external_id: ExternalId | None = None
    serial_number: SerialNumber | None = None
    security_profile: SecurityProfile | None = None
    client_certificate: ClientCertificateInput | None = None

    def to_domain(self) -> requests.ChargerChanges:
        return requests.ChargerChanges(
            given=frozenset(self.model_fields_set),
            ocpp_version=self.ocpp_version,
            password=self.password,
            external_id=self.external_id,
            serial_number=self.serial_number,
            security_profile=self.security_profile,
            client_certificate=self.client_certificate.to_domain() if self.client_certificate else None,
        )


# -- accounts and API keys --------------------------------------------------------------------


class AccountCreate(ApiModel):
    name: Annotated[str, Field(min_length=1, max_length=200)]

    def to_domain(self) -> requests.NewAccount:
        return requests.NewAccount(name=self.name)


class AccountUpdate(ApiModel):
    """Absent fields stay; neither may be cleared."""

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    unknown_id_tags: UnknownTokenPolicy | None = None

    @field_validator("name", "unknown_id_tags", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may be changed but not cleared")
        return value

    def to_domain(self) -> requests.AccountChanges:
        return requests.AccountChanges(name=self.name, unknown_id_tags=self.unknown_id_tags)


class ApiKeyCreate(ApiModel):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    #: Limit the key to these chargers of the account; omitted or ``null``: all of them.
    charger_ids: Annotated[list[Int32Id], Field(max_length=1000)] | None = None

    def to_domain(self) -> requests.NewApiKey:
        ids = tuple(self.charger_ids) if self.charger_ids is not None else None
        return requests.NewApiKey(name=self.name, charger_ids=ids)


class WebhookCreate(ApiModel):
    #: Checked beyond its length by the service (``evreserve.webhooks.check_url``).
    url: Annotated[str, Field(min_length=1, max_length=MAX_URL_LENGTH)]
    #: The types to receive; omitted or ``null``: all of them.
    events: Annotated[list[EventType], Field(min_length=1, max_length=20)] | None = None
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION_LENGTH)] | None = None

    def to_domain(self) -> NewWebhook:
        events = tuple(self.events) if self.events is not None else None
        return NewWebhook(url=self.url, events=events, description=self.description)


# -- access IDs ---------------------------------------------------------------------------------

AccessIdName = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]


class AccessIdCreate(ApiModel):
    ocpp_id_tag: IdTagField
    type: TokenType
    authorization_status: AuthorizationStatus = AuthorizationStatus.AUTHORIZED
    parent_id_tag: IdTagField | None = None
    name: AccessIdName | None = None

    def to_domain(self) -> requests.NewAccessId:
        return requests.NewAccessId(
            ocpp_id_tag=self.ocpp_id_tag,
            type=self.type,
            authorization_status=self.authorization_status,
            parent_id_tag=self.parent_id_tag,
            name=self.name,
        )


class AccessIdUpdate(ApiModel):
    """Fields to change; absent fields stay, ``null`` clears ``parentIdTag`` or ``name``.

    ``ocppIdTag`` cannot change: delete the access ID and create one for the new tag.
    """

    type: TokenType | None = None
    authorization_status: AuthorizationStatus | None = None
    parent_id_tag: IdTagField | None = None
    name: AccessIdName | None = None

    @field_validator("type", "authorization_status", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may be changed but not cleared")
        return value

    def to_domain(self) -> requests.AccessIdChanges:
        return requests.AccessIdChanges(
            given=frozenset(self.model_fields_set),
            type=self.type,
            authorization_status=self.authorization_status,
            parent_id_tag=self.parent_id_tag,
            name=self.name,
        )
