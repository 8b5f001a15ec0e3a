"""The public API's shapes: request bodies and responses, camelCase on the wire.

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

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from .models import (
    INT32_MAX,
    Account,
    ApiKey,
    CancelStatus,
    Charger,
    IdTokenType,
    OcppVersion,
    Port,
    Reservation,
    ReservationState,
    ReserveStatus,
    utcnow,
)

T = TypeVar("T")

#: OCPP IdToken: CiString20 (1.6). Printable ASCII only, as OCPP's CiString is.
_PRINTABLE = r"^[\x20-\x7e]+$"
#: A charger's identity: OCPP 2.0.1 identifierString without ``:`` (the Basic-auth
#: username equals the identity, so it cannot contain a colon) and at most 48 characters.
OCPP_ID_PATTERN = r"^[A-Za-z0-9*\-_=+|@.]{1,48}$"


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


# -- envelopes ---------------------------------------------------------------------------


class Data(ApiModel, Generic[T]):
    data: T


class Pagination(ApiModel):
    has_next_page: bool
    next_page_cursor: str | None


class Page(ApiModel, Generic[T]):
    data: list[T]
    pagination: Pagination


class ErrorBody(ApiModel):
    """Every error: ``error`` for people, ``code`` for programs, ``details`` when useful."""

    model_config = ConfigDict(extra="allow")

    error: str
    code: str
    details: Any | None = None


# -- reservations (shapes fixed by the spec) --------------------------------------------------


class ReserveRequest(ApiModel):
    port_id: Int32Id
    expiry_date: IsoInstant
    id_tag: IdTagField
    reservation_id: ReservationIdField
    parent_id_tag: IdTagField | None = None
    id_token_type: IdTokenType | None = None

    @field_validator("expiry_date")
    @classmethod
    def _in_future(cls, value: datetime) -> datetime:
        if value <= utcnow():
            raise ValueError("must be in the future")
        return value


class ReserveResult(ApiModel):
    status: ReserveStatus


class CancelRequest(ApiModel):
    charger_id: Int32Id
    reservation_id: ReservationIdField


class CancelResult(ApiModel):
    status: CancelStatus


class ReservationView(ApiModel):
    """A recorded reservation; ``status`` is its effective state (expiry applied)."""

    reservation_id: int
    charger_id: int
    port_id: int
    port_number: int
    id_tag: str
    parent_id_tag: str | None
    id_token_type: IdTokenType | None
    expiry_date: datetime
    status: ReservationState
    active: bool
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    #: For ``Failed``: the error code the API answered with (e.g. CHARGER_TIMEOUT).
    failure_code: str | None

    @classmethod
    def of(cls, reservation: Reservation, now: datetime) -> ReservationView:
        return cls(
            reservation_id=reservation.reservation_id,
            charger_id=reservation.charger_id,
            port_id=reservation.port_id,
            port_number=reservation.port_number,
            id_tag=reservation.id_tag,
            parent_id_tag=reservation.parent_id_tag,
            id_token_type=reservation.id_token_type,
            expiry_date=reservation.expiry_date,
            status=reservation.effective_state(now),
            active=reservation.is_active(now),
            created_at=reservation.created_at,
            updated_at=reservation.updated_at,
            ended_at=reservation.ended_at,
            failure_code=reservation.failure_code,
        )


# -- chargers and ports --------------------------------------------------------------------


#: A port's power: at least a watt. A bare ``gt=0`` let 5e-324 through, a number DynamoDB
#: cannot store (its exponent is below -128): the write failed with a 500.
PowerKw = Annotated[float, Field(ge=0.001, le=10_000)]


class PortInput(ApiModel):
    port_number: Int32Id
    name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    connector_type: Annotated[str, Field(min_length=1, max_length=50)] | None = None
    maximum_power_kw: PowerKw | None = None


class PortUpdate(ApiModel):
    """Fields to change on a port; ``null`` clears an optional one."""

    port_number: Int32Id | None = None
    name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    connector_type: Annotated[str, Field(min_length=1, max_length=50)] | None = None
    maximum_power_kw: PowerKw | None = None


Password = Annotated[str, Field(min_length=16, max_length=40, pattern=_PRINTABLE)]
ExternalId = Annotated[str, Field(min_length=1, max_length=100, pattern=_PRINTABLE)]
SerialNumber = Annotated[str, Field(min_length=1, max_length=100)]


def _unique_port_numbers(ports: list[PortInput]) -> list[PortInput]:
    numbers = [p.port_number for p in ports]
    if len(set(numbers)) != len(numbers):
        raise ValueError("portNumber values must be unique within a charger")
    return ports


class ChargerCreate(ApiModel):
    ocpp_id: Annotated[str, Field(pattern=OCPP_ID_PATTERN)]
    ocpp_version: OcppVersion | None = None
    #: OCPP's Basic-auth password (16-40 characters). Omitted: one is generated and
    #: returned once in the response.
    password: Password | None = None
    external_id: ExternalId | None = None
    serial_number: SerialNumber | None = None
    ports: Annotated[list[PortInput], Field(min_length=1, max_length=64)]

    _ports_unique = field_validator("ports")(_unique_port_numbers)


class ChargerUpdate(ApiModel):
    """Fields to change; absent fields stay, ``null`` clears an optional one.

    ``ocppId`` cannot change: it is the identity the charger connects with.
    """

    ocpp_version: OcppVersion | None = None
    password: Password | None = None
    external_id: ExternalId | None = None
    serial_number: SerialNumber | None = None


class OcppStatusView(ApiModel):
    status: str
    timestamp: datetime
    error_code: str | None
    vendor_error_code: str | None
    info: str | None


class ConnectionStatusView(ApiModel):
    status: Literal["Connected", "Disconnected"]
    timestamp: datetime


class PortView(ApiModel):
    id: int
    charger_id: int
    port_number: int
    name: str | None
    connector_type: str | None
    maximum_power_kw: float | None
    ocpp_status: OcppStatusView | None

    @classmethod
    def of(cls, charger: Charger, port: Port) -> PortView:
        status = port.ocpp_status
        return cls(
            id=port.id,
            charger_id=charger.id,
            port_number=port.port_number,
            name=port.name,
            connector_type=port.connector_type,
            maximum_power_kw=port.maximum_power_kw,
            ocpp_status=(
                OcppStatusView(
                    status=status.status,
                    timestamp=status.timestamp,
                    error_code=status.error_code,
                    vendor_error_code=status.vendor_error_code,
                    info=status.info,
                )
                if status
                else None
            ),
        )


class ChargerView(ApiModel):
    id: int
    ocpp_id: str
    ocpp_version: OcppVersion | None
    external_id: str | None
    serial_number: str | None
    #: ``null`` until the charger first connects.
    connection_status: ConnectionStatusView | None
    #: The OCPP version of the current (or last) connection.
    protocol: str | None
    number_of_ports: int
    ports: list[PortView]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, charger: Charger) -> ChargerView:
        conn = charger.connection
        return cls(
            id=charger.id,
            ocpp_id=charger.ocpp_id,
            ocpp_version=charger.ocpp_version,
            external_id=charger.external_id,
            serial_number=charger.serial_number or (charger.boot.serial_number if charger.boot else None),
            connection_status=(
                ConnectionStatusView(status=conn.state.value, timestamp=conn.timestamp) if conn else None
            ),
            protocol=conn.protocol.subprotocol if conn and conn.protocol else None,
            number_of_ports=len(charger.ports),
            ports=[PortView.of(charger, p) for p in sorted(charger.ports, key=lambda p: p.port_number)],
            created_at=charger.created_at,
            updated_at=charger.updated_at,
        )


class ChargerCreated(ChargerView):
    """The registered charger; ``password`` only when the service generated it (shown once)."""

    password: str | None = None


# -- accounts and API keys --------------------------------------------------------------------


class AccountCreate(ApiModel):
    name: Annotated[str, Field(min_length=1, max_length=200)]


class AccountView(ApiModel):
    id: int
    name: str
    created_at: datetime

    @classmethod
    def of(cls, account: Account) -> AccountView:
        return cls(id=account.id, name=account.name, created_at=account.created_at)


class ApiKeyCreate(ApiModel):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    #: Limit the key to these chargers of the account; omitted or ``null``: all of them.
    charger_ids: Annotated[list[Int32Id], Field(max_length=1000)] | None = None


class ApiKeyView(ApiModel):
    key_id: str
    name: str
    account_id: int | None
    charger_ids: list[int] | None
    created_at: datetime

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyView:
        return cls(
            key_id=key.key_id,
            name=key.name,
            account_id=key.account_id,
            charger_ids=list(key.charger_ids) if key.charger_ids is not None else None,
            created_at=key.created_at,
        )


class ApiKeyCreated(ApiKeyView):
    """The new key; ``apiKey`` is shown this once and never again."""

    api_key: str


# -- concrete envelopes -----------------------------------------------------------------------
# Named subclasses rather than ``Data[X]`` in the handlers: the OpenAPI document gets
# readable schema names, and pydantic parametrizes the generics here, in a module that
# is always importable by name (the local API imports handler modules from files).


class ReserveResponse(Data[ReserveResult]):
    pass


class CancelResponse(Data[CancelResult]):
    pass


class ReservationResponse(Data[ReservationView]):
    pass


class ReservationList(Page[ReservationView]):
    pass


class ChargerResponse(Data[ChargerView]):
    pass


class ChargerCreatedResponse(Data[ChargerCreated]):
    pass


class ChargerList(Page[ChargerView]):
    pass


class PortResponse(Data[PortView]):
    pass


class PortListResponse(Data[list[PortView]]):
    pass


class AccountResponse(Data[AccountView]):
    pass


class AccountList(Page[AccountView]):
    pass


class ApiKeyCreatedResponse(Data[ApiKeyCreated]):
    pass


class ApiKeyList(Page[ApiKeyView]):
    pass
