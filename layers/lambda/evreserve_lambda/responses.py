"""The public API's responses and their envelopes, camelCase on the wire (the requests: ``schemas``).

Each view is built from a domain model (``X.of(...)``); reservations show their
effective state (``evreserve.lifecycle``: expiry applied when read).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import ConfigDict, Field, field_serializer

from evreserve import lifecycle
from evreserve.access_ids import AccessId, AuthorizationStatus, TokenType
from evreserve.messagelog import DIRECTION_NAMES, LoggedMessage
from evreserve.models import (
    Account,
    ApiKey,
    CancelStatus,
    Charger,
    IdTokenType,
    OcppStatus,
    OcppVersion,
    Port,
    Reservation,
    ReservationState,
    ReserveStatus,
    UnknownTokenPolicy,
)
from evreserve.ocpp_mapping import ocpp_datetime

from .schemas import ApiModel

T = TypeVar("T")


class Data[T](ApiModel):
    data: T


class Pagination(ApiModel):
    has_next_page: bool
    next_page_cursor: str | None


class Page[T](ApiModel):
    data: list[T]
    pagination: Pagination


class ErrorBody(ApiModel):
    """Every error: ``error`` for people, ``code`` for programs, ``details`` when useful."""

    model_config = ConfigDict(extra="allow")

    error: str
    code: str
    details: Any | None = None


class ReserveResult(ApiModel):
    status: ReserveStatus


class CancelResult(ApiModel):
    status: CancelStatus


class ReservationView(ApiModel):
    """A recorded reservation; ``status`` is its effective state (expiry applied)."""

    reservation_id: int
    charger_id: int
    #: ``null`` for a whole-charger reservation until the charger says which port holds it.
    port_id: int | None
    port_number: int | None
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
            status=lifecycle.effective_state(reservation, now),
            active=lifecycle.is_active(reservation, now),
            created_at=reservation.created_at,
            updated_at=reservation.updated_at,
            ended_at=reservation.ended_at,
            failure_code=lifecycle.effective_failure_code(reservation, now),
        )


class OcppStatusView(ApiModel):
    status: str
    timestamp: datetime
    error_code: str | None
    vendor_error_code: str | None
    info: str | None

    @classmethod
    def of(cls, status: OcppStatus) -> OcppStatusView:
        return cls(
            status=status.status,
            timestamp=status.timestamp,
            error_code=status.error_code,
            vendor_error_code=status.vendor_error_code,
            info=status.info,
        )


class ConnectorStatusView(OcppStatusView):
    """One connector of a 2.0.1 EVSE, with its own latest report."""

    connector_id: int

    @classmethod
    def of_connector(cls, status: OcppStatus) -> ConnectorStatusView:
        return cls(**OcppStatusView.of(status).model_dump(), connector_id=status.connector_id or 0)


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
    #: The latest report for the port (on 2.0.1, from whichever connector reported last).
    ocpp_status: OcppStatusView | None
    #: 2.0.1: each connector of the EVSE with its own latest report; empty for 1.6.
    connectors: list[ConnectorStatusView]

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
            ocpp_status=OcppStatusView.of(status) if status else None,
            connectors=[ConnectorStatusView.of_connector(c) for c in port.connectors],
        )


class BootView(ApiModel):
    """What the charger said about itself in its last BootNotification."""

    vendor: str | None
    model: str | None
    firmware_version: str | None
    timestamp: datetime


class ClientCertificateView(ApiModel):
    ca_certificate: str
    certificate_fingerprint: str | None


class ChargerView(ApiModel):
    id: int
    ocpp_id: str
    ocpp_version: OcppVersion | None
    external_id: str | None
    serial_number: str | None
    security_profile: int
    #: Security profile 3: what the charger's TLS client certificate must be.
    client_certificate: ClientCertificateView | None
    #: ``null`` until the charger first boots.
    boot: BootView | None
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
            security_profile=charger.security_profile,
            boot=(
                BootView(
                    vendor=charger.boot.vendor,
                    model=charger.boot.model,
                    firmware_version=charger.boot.firmware_version,
                    timestamp=charger.boot.timestamp,
                )
                if charger.boot is not None
                else None
            ),
            client_certificate=(
                ClientCertificateView(
                    ca_certificate=charger.client_certificate.ca_pem,
                    certificate_fingerprint=charger.client_certificate.fingerprint_sha256,
                )
                if charger.client_certificate is not None
                else None
            ),
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


class AccountView(ApiModel):
    id: int
    name: str
    created_at: datetime
    #: What chargers are told about a token the account has not registered.
    unknown_id_tags: UnknownTokenPolicy

    @classmethod
    def of(cls, account: Account) -> AccountView:
        return cls(
            id=account.id, name=account.name, created_at=account.created_at, unknown_id_tags=account.unknown_id_tags
        )


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


# -- the OCPP message log -----------------------------------------------------------------


class OcppMessageView(ApiModel):
    """One CALL and its answer (``messageResponse``: the CALLRESULT payload, the CALLERROR, or null)."""

    id: str
    # Written with milliseconds always (the serializer below); still a date-time to readers.
    created_at: datetime = Field(json_schema_extra={"format": "date-time"})
    ocpp_charger_identity: str
    message_type: str
    message_payload: Any
    message_response: Any
    charger_id: int
    protocol: Literal["ocpp1.6", "ocpp2.0.1"]
    direction: Literal["fromCharger", "toCharger"]

    @field_serializer("created_at")
    def _milliseconds(self, value: datetime) -> str:
        # Fixed width, as logged (milliseconds): string order is time order, for every item.
        return ocpp_datetime(value)

    @classmethod
    def of(cls, message: LoggedMessage, charger_id: int) -> OcppMessageView:
        return cls(
            id=message.id,
            created_at=message.created_at,
            ocpp_charger_identity=message.ocpp_id,
            message_type=message.action,
            message_payload=message.payload,
            message_response=message.response,
            charger_id=charger_id,
            protocol=message.protocol,
            direction=DIRECTION_NAMES[message.direction],
        )


class OcppMessageList(Page[OcppMessageView]):
    pass


# -- access IDs ---------------------------------------------------------------------------------


class AccessIdView(ApiModel):
    """A driver's token: ``partner-api.md``, "Access IDs"."""

    id: int
    ocpp_id_tag: str
    type: TokenType
    authorization_status: AuthorizationStatus
    parent_id_tag: str | None
    name: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, entry: AccessId) -> AccessIdView:
        return cls(
            id=entry.access_id,
            ocpp_id_tag=entry.ocpp_id_tag,
            type=entry.type,
            authorization_status=entry.authorization_status,
            parent_id_tag=entry.parent_id_tag,
            name=entry.name,
            created_at=entry.created_at,
            updated_at=entry.updated_at,
        )


class AccessIdResponse(Data[AccessIdView]):
    pass


class AccessIdList(Page[AccessIdView]):
    pass
