"""The one mapping from the domain's errors to HTTP answers.

Every error body is flat: ``{"error": <for people>, "code": <stable, for programs>}``
plus, for some codes, fields that help a program react (``field``, ``details``,
``ocppErrorCode``...). Internal details (table names, ids of other accounts) never go
out: only the allow-listed detail keys below are copied into the body.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from evreserve.errors import (
    AlreadyExists,
    ChargerCallError,
    ChargerError,
    ChargerOffline,
    ChargerTimeout,
    Conflict,
    DependencyUnavailable,
    DomainError,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    Unauthorized,
)

#: Most specific class first: the first ``isinstance`` match decides.
STATUS: Sequence[tuple[type[DomainError], HTTPStatus]] = (
    (InvalidRequest, HTTPStatus.BAD_REQUEST),
    (Unauthorized, HTTPStatus.UNAUTHORIZED),
    (Forbidden, HTTPStatus.FORBIDDEN),
    (NotFound, HTTPStatus.NOT_FOUND),
    (AlreadyExists, HTTPStatus.CONFLICT),
    (Conflict, HTTPStatus.CONFLICT),
    (RateLimited, HTTPStatus.TOO_MANY_REQUESTS),
    # A charger that is not connected is a state of the resource, not a server
    # fault: 409, so clients do not retry it blindly the way they retry 5xx.
    (ChargerOffline, HTTPStatus.CONFLICT),
    (ChargerTimeout, HTTPStatus.GATEWAY_TIMEOUT),
    (ChargerCallError, HTTPStatus.BAD_GATEWAY),
    (ChargerError, HTTPStatus.BAD_GATEWAY),
    (DependencyUnavailable, HTTPStatus.SERVICE_UNAVAILABLE),
)

#: Detail keys that may be shown to the caller.
_PUBLIC_DETAILS = frozenset({"field", "reservationId", "ocppErrorCode", "ocppErrorDescription"})


def status_of(exc: DomainError) -> HTTPStatus:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return HTTPStatus.INTERNAL_SERVER_ERROR


def error_body(exc: DomainError) -> dict[str, Any]:
    body: dict[str, Any] = {"error": exc.message, "code": exc.code}
    body.update({k: v for k, v in exc.details.items() if k in _PUBLIC_DETAILS and v is not None})
    if isinstance(exc, InvalidRequest) and isinstance(body.get("field"), str):
        # The same ``details`` list as a validation failure at the edge, so a client
        # reads every 400 one way.
        location = str(exc.details.get("location", "body"))
        body["details"] = [{"location": location, "field": body["field"], "message": exc.message}]
    if isinstance(exc, RateLimited):
        body["retryAfter"] = exc.retry_after_s
    return body


def error_headers(exc: DomainError) -> dict[str, str]:
    if isinstance(exc, RateLimited):
        return {"Retry-After": str(exc.retry_after_s)}
    return {}


def validation_details(errors: Sequence[Any]) -> list[dict[str, str]]:
    """Pydantic/Powertools validation errors as ``{location, field, message}``.

    ``loc`` is e.g. ``("body", "idTag")`` or ``("query", "limit")``; the input values
    are not echoed back (they may be secrets such as a charger password).
    """
    details = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        location = loc[0] if loc else "body"
        field = ".".join(loc[1:]) or location
        message = str(error.get("msg", "is invalid"))
        if error.get("type") == "json_invalid":
            field, message = "body", "is not valid JSON"
        details.append({"location": location, "field": field, "message": message})
    return details


def invalid_request(errors: Sequence[Any]) -> tuple[HTTPStatus, dict[str, Any]]:
    details = validation_details(errors)
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
    body = {"error": f"Invalid request: {summary}" if summary else "Invalid request", "code": InvalidRequest.code}
    body["details"] = details  # type: ignore[assignment]
    return HTTPStatus.BAD_REQUEST, body


def dumps(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"))
