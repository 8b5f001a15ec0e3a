"""What the OpenAPI document says about errors, shared by every route.

The document itself is generated from the functions' routes by
``devstack/openapi.py`` and bundled here (``openapi.json``) so that a function can
serve it: each Lambda only has its own module and this layer.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from .responses import ErrorBody

_ERROR_CONTENT = {"application/json": {"model": ErrorBody}}

_DESCRIPTIONS = {
    400: "Invalid request (INVALID_REQUEST), with `details` per field",
    401: "Missing or invalid API key (INVALID_API_KEY)",
    403: "The key may not do this (FORBIDDEN)",
    404: "Unknown resource, or one outside the key's scope (NOT_FOUND)",
    409: "Conflict with the current state",
    429: "Rate limit exceeded (RATE_LIMITED), with Retry-After",
    500: "Internal error (INTERNAL_ERROR)",
    502: "The charger answered with an OCPP CALLERROR (CHARGER_ERROR, with ocppErrorCode)",
    503: "A backing service is unavailable (SERVICE_UNAVAILABLE); retry",
    504: "The charger did not answer in time (CHARGER_TIMEOUT)",
}

#: Errors any route may answer.
COMMON = (400, 401, 403, 404, 429, 500, 503)
#: Errors of routes that talk to a charger.
CHARGER = (409, 502, 504)


_SUCCESS = {200: "OK", 201: "Created", 204: "Done; no body"}


def errors(*extra: int, ok: int = 200, descriptions: dict[int, str] | None = None) -> dict[int, OpenAPIResponse]:
    """The ``responses=`` of a route: its success answer ``ok``, the common errors and ``extra``."""
    chosen = {**_DESCRIPTIONS, **(descriptions or {})}
    responses: dict[int, OpenAPIResponse] = {
        code: {"description": chosen[code], "content": _ERROR_CONTENT}  # type: ignore[typeddict-item]
        for code in sorted({*COMMON, *extra})
    }
    if 429 in responses:
        responses[429]["headers"] = {
            "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}
        }
    # Given any responses, Powertools documents only those: the success answer must be
    # listed too. Without "content", Powertools fills in the route's return model; a 204
    # has no body at all.
    success: OpenAPIResponse = {"description": _SUCCESS[ok]}
    if ok == 204:
        success["content"] = {}
    return {ok: success, **responses}


@cache
def bundled_document() -> dict[str, Any]:
    """The generated OpenAPI document shipped in this layer."""
    text = (Path(__file__).parent / "openapi.json").read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    return document
