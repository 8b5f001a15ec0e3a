"""Domain models: accounts and API keys, chargers and ports, reservations, commands.

These are the service's own vocabulary, independent of how DynamoDB stores them
(``evreserve.storage.items``) and of how the public API spells them
(``evreserve_lambda.schemas``). Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: OCPP's integers are signed 32-bit; ids and connector numbers must fit.
INT32_MAX = 2**31 - 1
#: A charger's identity: OCPP 2.0.1 identifierString without ``:`` (the Basic-auth
#: username equals the identity, so it cannot contain a colon) and at most 48 characters.
OCPP_ID_PATTERN = r"^[A-Za-z0-9*\-_=+|@.]{1,48}$"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OcppVersion(StrEnum):
    V16 = "1.6"
    V201 = "2.0.1"

    @property
    def subprotocol(self) -> str:
        return f"ocpp{self.value}"

    @classmethod
    def from_subprotocol(cls, subprotocol: str) -> OcppVersion:
        for version in cls:
            if version.subprotocol == subprotocol:
                return version
        raise ValueError(f"not an OCPP subprotocol this service speaks: {subprotocol!r}")


class IdTokenType(StrEnum):
    """OCPP 2.0.1 IdTokenEnumType values the public API accepts (``idTokenType``)."""

    CENTRAL = "Central"
    EMAID = "eMAID"
    ISO14443 = "ISO14443"
    ISO15693 = "ISO15693"
    KEY_CODE = "KeyCode"
    LOCAL = "Local"
    MAC_ADDRESS = "MacAddress"


class ReserveStatus(StrEnum):
    """What the public API answers to a reservation: the charger's own ReserveNow status."""

    ACCEPTED = "Accepted"
    FAULTED = "Faulted"
    OCCUPIED = "Occupied"
    REJECTED = "Rejected"
    UNAVAILABLE = "Unavailable"


class CancelStatus(StrEnum):
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"


class ReservationState(StrEnum):
    """A reservation's lifecycle as this service records it.

    ``Pending`` until the charger answers; then the charger's answer (only ``Accepted``
    is active); then how an accepted one ended. ``Failed`` means no answer came
    (offline, timeout, error): the charger may still hold it, and re-sending the same
    reservationId safely replaces it (OCPP).
    """

    # How it changes is decided in ``evreserve.lifecycle`` alone. (The docstring is the API
    # document's description of the field: it speaks to partners.)

    PENDING = "Pending"
    ACCEPTED = "Accepted"
    FAULTED = "Faulted"
    OCCUPIED = "Occupied"
    REJECTED = "Rejected"
    UNAVAILABLE = "Unavailable"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    EXPIRED = "Expired"
    USED = "Used"
    REMOVED = "Removed"


class UnknownTokenPolicy(StrEnum):
    """What a charger is told about a token its account has not registered as an access ID."""

    #: Today's behaviour and the default: anyone may charge; groups come from reservations only.
    ACCEPT = "Accepted"
    #: Only registered tokens (and the reserved token of an active reservation) may charge.
    REJECT = "Invalid"


class Account(Model):
    id: int
    name: str
    created_at: datetime
    unknown_id_tags: UnknownTokenPolicy = UnknownTokenPolicy.ACCEPT


class ApiKey(Model):
    """A caller's key, as stored: never the key itself, only its hash."""

    key_id: str
    key_hash: str
    name: str
    #: ``None`` for the platform admin key, which belongs to no account.
    account_id: int | None
    #: ``None`` = every charger of the account; otherwise only these charger ids.
    charger_ids: tuple[int, ...] | None = None
    created_at: datetime

    @property
    def is_admin(self) -> bool:
        return self.account_id is None

    def may_access_charger(self, account_id: int, charger_id: int) -> bool:
        if self.account_id != account_id:
            return False
        return self.charger_ids is None or charger_id in self.charger_ids


class OcppStatus(Model):
    """A port's status as the charger last reported it (StatusNotification)."""

    status: str
    timestamp: datetime
    error_code: str | None = None
    vendor_error_code: str | None = None
    info: str | None = None
    #: 2.0.1: the connector of the EVSE (the port) that reported; ``None`` for 1.6.
    connector_id: int | None = None


class ConnectionState(StrEnum):
    CONNECTED = "Connected"
    DISCONNECTED = "Disconnected"


class Connection(Model):
    """Where a charger is connected, as the gateway instance holding it registered it.

    ``session_id`` names one WebSocket connection; writes about a connection are
    conditional on it, so a stale instance can never overwrite a newer connection.
    """

    state: ConnectionState
    timestamp: datetime
    session_id: str
    instance_id: str
    queue_url: str
    protocol: OcppVersion | None = None


class BootInfo(Model):
    """What the charger said about itself in its last BootNotification."""

    vendor: str | None = None
    model: str | None = None
    serial_number: str | None = None
    firmware_version: str | None = None
    timestamp: datetime


class Port(Model):
    id: int = Field(ge=1, le=INT32_MAX)
    #: OCPP 1.6 connectorId / OCPP 2.0.1 evseId.
    port_number: int = Field(ge=1, le=INT32_MAX)
    name: str | None = None
    connector_type: str | None = None
    maximum_power_kw: float | None = None
    #: The latest report for the port: 1.6's connector, or whichever of a 2.0.1 EVSE's
    #: connectors reported last.
    ocpp_status: OcppStatus | None = None
    #: 2.0.1: each connector of the EVSE with its own latest report, by connector id.
    connectors: tuple[OcppStatus, ...] = ()


class ClientCertificate(Model):
    """What a security profile 3 charger must present (``evreserve.client_certs``)."""

    #: The CA that must have issued the charger's certificate (PEM).
    ca_pem: str
    #: Lowercase hex SHA-256 of the one certificate admitted; ``None``: any certificate of
    #: the CA whose subject CN is the charger's ocppId.
    fingerprint_sha256: str | None = None


class Charger(Model):
    id: int = Field(ge=1, le=INT32_MAX)
    account_id: int
    ocpp_id: str
    external_id: str | None = None
    serial_number: str | None = None
    #: ``None`` = whichever version the charger negotiates.
    ocpp_version: OcppVersion | None = None
    #: Slow salted hash (``evreserve.security``); ``None`` only with ``allow_no_password``.
    password_hash: str | None = None
    #: OCPP security profile 0 (no Basic auth), only when registered so explicitly.
    allow_no_password: bool = False
    #: OCPP security profile: 1 and 2 authenticate with the password (2: over TLS, which
    #: the load balancer terminates), 3 with a TLS client certificate (``client_certificate``).
    security_profile: int = Field(2, ge=1, le=3)
    client_certificate: ClientCertificate | None = None
    ports: tuple[Port, ...] = ()
    connection: Connection | None = None
    boot: BootInfo | None = None
    created_at: datetime
    updated_at: datetime

    def port_by_id(self, port_id: int) -> Port | None:
        return next((p for p in self.ports if p.id == port_id), None)

    def port_by_number(self, port_number: int) -> Port | None:
        return next((p for p in self.ports if p.port_number == port_number), None)

    @property
    def is_connected(self) -> bool:
        return self.connection is not None and self.connection.state is ConnectionState.CONNECTED


class Reservation(Model):
    account_id: int
    reservation_id: int = Field(ge=0, le=INT32_MAX)
    charger_id: int
    #: ``None``: a whole-charger reservation (1.6 connectorId 0, 2.0.1 without evseId) until
    #: the charger says which port holds it (marks one Reserved, or a transaction uses it).
    port_id: int | None
    #: The connectorId (1.6) / evseId (2.0.1) it was sent for or, for a whole-charger
    #: reservation, the one the charger reported.
    port_number: int | None
    id_tag: str
    parent_id_tag: str | None = None
    id_token_type: IdTokenType | None = None
    expiry_date: datetime
    state: ReservationState
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None = None
    #: The command that created (or last replaced) it.
    command_id: str
    #: For ``Failed``: the error code of the answer the API gave.
    failure_code: str | None = None
    #: While ``Pending``: when the API stops waiting for the charger (the command's
    #: deadline and grace). Past it a Pending record reads as Failed (``lifecycle``).
    answer_by: datetime | None = None


class CommandAction(StrEnum):
    """The OCPP actions the API sends to chargers (the action name on the wire)."""

    RESERVE_NOW = "ReserveNow"
    CANCEL_RESERVATION = "CancelReservation"


class OutcomeKind(StrEnum):
    #: The charger answered with a CALLRESULT; ``payload`` holds it.
    RESULT = "result"
    #: The charger answered with a CALLERROR; ``error_code`` / ``error_description`` hold it.
    CALL_ERROR = "call_error"
    #: The charger did not answer before the deadline (the charger may still apply it).
    TIMEOUT = "timeout"
    #: The charger was not connected to the instance when the command arrived, or left.
    OFFLINE = "offline"
    #: The command reached the gateway after its deadline and was not sent.
    EXPIRED = "expired"
    #: The command could not be queued (SQS unreachable); a retry may queue it anew.
    NOT_SENT = "not_sent"


class CommandOutcome(Model):
    kind: OutcomeKind
    payload: dict[str, Any] | None = None
    error_code: str | None = None
    error_description: str | None = None
    completed_at: datetime
    #: Which side wrote it: a gateway instance id, or ``"api"`` when the waiting
    #: function gave up first.
    completed_by: str


class ReservationRef(Model):
    """Which reservation record a command's outcome updates."""

    account_id: int
    reservation_id: int


class Command(Model):
    """A request to one charger, handed from an API function to the gateway holding it."""

    # A field added later must not make a gateway of the version before refuse the
    # command mid-upgrade: unknown fields are ignored, not refused.
    model_config = ConfigDict(frozen=True, extra="ignore")

    command_id: str
    account_id: int
    charger_id: int
    ocpp_id: str
    ocpp_version: OcppVersion
    action: CommandAction
    #: The OCPP payload exactly as sent on the wire (camelCase keys).
    payload: dict[str, Any]
    #: The gateway instance and connection the command was addressed to.
    instance_id: str
    session_id: str
    created_at: datetime
    #: After this instant the charger's answer is no longer awaited by anyone.
    deadline: datetime
    #: Hash of the API request that caused it; a retry with the same body finds this command.
    request_hash: str
    reservation: ReservationRef | None = None
    outcome: CommandOutcome | None = None
    #: The API request it came from, and its X-Ray trace (evreserve.correlation): the
    #: gateway logs them with what it did about the command.
    correlation_id: str | None = None
    xray_trace_id: str | None = None

    def remaining_s(self, now: datetime) -> float:
        return (self.deadline - now).total_seconds()
