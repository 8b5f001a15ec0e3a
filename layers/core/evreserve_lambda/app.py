"""Building an API function: the resolver, its error handling, the caller, the services.

Each function module calls ``create_app()`` and declares its routes; this module keeps
the Powertools wiring identical across them:

* validation on (pydantic bodies and query parameters), and its failures answered as
  this API's ``400 INVALID_REQUEST`` envelope instead of Powertools' default 422;
* every ``DomainError`` mapped once by ``evreserve_lambda.http``; anything else is a
  logged ``500 INTERNAL_ERROR`` that reveals nothing;
* the services built lazily on the first request (no AWS calls at import), and
  replaceable by tests.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from evreserve.errors import DomainError
from evreserve.services.bootstrap import Services, build_services
from evreserve.services.principal import Principal

from .http import dumps, error_body, error_headers, invalid_request, status_of
from .settings import FunctionSettings

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="EvReserve")

_services: Services | None = None


def services() -> Services:
    """The services of this function instance, built on first use."""
    global _services
    if _services is None:
        _services = build_services(FunctionSettings())
    return _services


def use_services(value: Services | None) -> None:
    """Replace the services (tests), or drop them so the next request rebuilds them."""
    global _services
    _services = value


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        status_code=int(status), content_type=content_types.APPLICATION_JSON, body=dumps(body), headers=headers
    )


def no_content() -> Response[str]:
    """204 with no body at all (HTTP forbids one; ``None`` would be serialized as ``null``)."""
    return Response(status_code=HTTPStatus.NO_CONTENT, body="")


def _invalid(exc: RequestValidationError) -> Response[Any]:
    status, body = invalid_request(exc.errors())
    return json_response(status, body)


def _domain(exc: DomainError) -> Response[Any]:
    status = status_of(exc)
    if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        logger.warning("request failed", extra={"code": exc.code, "reason": exc.message})
    return json_response(status, error_body(exc), error_headers(exc))


def _not_found(_exc: NotFoundError) -> Response[Any]:
    return json_response(HTTPStatus.NOT_FOUND, {"error": "Not found", "code": "NOT_FOUND"})


def _unexpected(_exc: Exception) -> Response[Any]:
    logger.exception("unhandled error")
    return json_response(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "Internal server error", "code": "INTERNAL_ERROR"})


def create_app() -> APIGatewayRestResolver:
    app = APIGatewayRestResolver(enable_validation=True)
    # Registered by call, not as decorators: Powertools' exception_handler is untyped.
    app.exception_handler(RequestValidationError)(_invalid)
    app.exception_handler(DomainError)(_domain)
    app.not_found(_not_found)
    app.exception_handler(Exception)(_unexpected)
    return app


def caller(app: APIGatewayRestResolver) -> Principal:
    """Who sent the current request, from the context the Lambda authorizer returned."""
    context = app.current_event.raw_event.get("requestContext", {}).get("authorizer")
    principal = Principal.from_context(context)
    logger.append_keys(key_id=principal.key_id, account_id=principal.account_id)
    return principal


def lambda_handler(app: APIGatewayRestResolver) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The Lambda entrypoint of a function: logging, tracing and metrics around ``app``."""

    @logger.inject_lambda_context(correlation_id_path="requestContext.requestId", clear_state=True)
    @tracer.capture_lambda_handler(capture_response=False)
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return app.resolve(event, context)

    return cast(Callable[[dict[str, Any], Any], dict[str, Any]], handler)
