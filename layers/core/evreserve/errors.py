"""The domain's errors, each with a stable machine-readable code.

Every failure the service reports to a caller is one of these. Each transport maps
them once: the API function to HTTP statuses (``evreserve_lambda.http``), the gateway
to OCPP CALLERRORs. Nobody matches on message text; match on the class or ``code``.

Tree::

    DomainError                      INTERNAL_ERROR
    ├── InvalidRequest               INVALID_REQUEST
    ├── Unauthorized                 INVALID_API_KEY
    ├── Forbidden                    FORBIDDEN
    ├── NotFound                     NOT_FOUND
    ├── Conflict                     CONFLICT
    │   ├── AlreadyExists            ALREADY_EXISTS
    │   ├── ReservationIdConflict    RESERVATION_ID_CONFLICT
    │   ├── IdempotencyConflict      IDEMPOTENCY_CONFLICT
    │   ├── StaleWrite               STALE_WRITE
    │   └── QuotaExceeded            QUOTA_EXCEEDED
    ├── RateLimited                  RATE_LIMITED
    │   └── TooManyCommands          TOO_MANY_COMMANDS
    ├── ChargerError
    │   ├── ChargerOffline           CHARGER_OFFLINE
    │   ├── ChargerTimeout           CHARGER_TIMEOUT
    │   └── ChargerCallError         CHARGER_ERROR
    └── DependencyUnavailable        SERVICE_UNAVAILABLE
"""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    """Base of every error the service reports; ``code`` is stable and machine-readable."""

    code: ClassVar[str] = "INTERNAL_ERROR"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details


class InvalidRequest(DomainError):
    """The request is malformed or breaks a rule of the API."""

    code = "INVALID_REQUEST"


class Unauthorized(DomainError):
    """No API key, or one that is not known."""

    code = "INVALID_API_KEY"


class Forbidden(DomainError):
    """The key is known but may not do this (e.g. an account key on an admin route)."""

    code = "FORBIDDEN"


class NotFound(DomainError):
    """The resource does not exist, or exists outside the caller's scope.

    The two are deliberately indistinguishable so that no key learns what another
    account owns.
    """

    code = "NOT_FOUND"


class Conflict(DomainError):
    """The request contradicts the current state."""

    code = "CONFLICT"


class AlreadyExists(Conflict):
    """A unique attribute (e.g. a charger's ocppId) is already taken."""

    code = "ALREADY_EXISTS"


class AccessIdExists(AlreadyExists):
    """The account has an access ID for this ocppIdTag (idTags compare case-insensitively)."""

    code = "ACCESS_ID_EXISTS"


class ReservationIdConflict(Conflict):
    """The reservationId is already active on a different port or charger."""

    code = "RESERVATION_ID_CONFLICT"


class IdempotencyConflict(Conflict):
    """The same idempotency key was used with a different request body."""

    code = "IDEMPOTENCY_CONFLICT"


class StaleWrite(Conflict):
    """A conditional write lost to a newer one (e.g. a charger's newer connection)."""

    code = "STALE_WRITE"


class QuotaExceeded(Conflict):
    """An account already has as many of something (API keys) as it may have."""

    code = "QUOTA_EXCEEDED"


class RateLimited(DomainError):
    """Too many requests for this key in the current window."""

    code = "RATE_LIMITED"

    def __init__(self, message: str, retry_after_s: int, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after_s = retry_after_s


class TooManyCommands(RateLimited):
    """An account has as many commands on their way to chargers as it may have at once."""

    code = "TOO_MANY_COMMANDS"


class ChargerError(DomainError):
    """The charger could not give an answer the API can pass on."""

    code = "CHARGER_ERROR"


class ChargerOffline(ChargerError):
    """The charger is not connected to any gateway, or left before answering."""

    code = "CHARGER_OFFLINE"


class ChargerTimeout(ChargerError):
    """The charger did not answer before the command's deadline."""

    code = "CHARGER_TIMEOUT"


class ChargerCallError(ChargerError):
    """The charger answered with an OCPP CALLERROR the API cannot map to a status."""

    code = "CHARGER_ERROR"

    def __init__(self, message: str, ocpp_code: str, ocpp_description: str = "", **details: Any) -> None:
        super().__init__(message, ocppErrorCode=ocpp_code, ocppErrorDescription=ocpp_description, **details)
        self.ocpp_code = ocpp_code
        self.ocpp_description = ocpp_description


class DependencyUnavailable(DomainError):
    """DynamoDB or SQS could not be reached in time; nothing was changed, or the change is unknown."""

    code = "SERVICE_UNAVAILABLE"
