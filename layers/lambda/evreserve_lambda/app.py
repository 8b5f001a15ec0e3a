"""Building an API function: the resolver, its error handling, the caller, the services.

Each function module calls ``create_app()`` and declares its routes; this module keeps
the Powertools wiring identical across them:

* validation on (pydantic bodies and query parameters), and its failures answered as
  this API's ``400 INVALID_REQUEST`` envelope instead of Powertools' default 422;
* every ``DomainError`` mapped once by ``evreserve_lambda.http``; anything else is a
  logged ``500 INTERNAL_ERROR`` that reveals nothing;
* the services built lazily on the first request (no AWS calls at import), and
  replaceable by tests;
* the per-key rate limit, so that every request a key sends counts, valid or not (one
  conditional write in DynamoDB, shared by all instances): checked before routing, or,
  on the routes that send a command, carried by the command's transaction and settled
  after the others (``evreserve.storage.ratelimit``).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.metrics import MetricUnit

from evreserve import correlation
from evreserve.errors import DomainError, RateLimited
from evreserve.services.principal import Principal
from evreserve.settings import RateLimitSettings
from evreserve.storage import ratelimit
from evreserve.storage.ratelimit import RateLimiter

from . import snapstart
from .http import dumps, error_body, error_headers, invalid_request, status_of
from .settings import CorsSettings
from .tracing import create_tracer

# Re-exported: the functions and the tests reach the services here.
from .wiring import services as services
from .wiring import use_services as use_services

logger = Logger()
_METRICS_LOCK = threading.Lock()
tracer = create_tracer()
metrics = Metrics(namespace="EvReserve")


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


_NOT_JSON = [{"loc": ("header", "Content-Type"), "msg": "must be application/json", "type": "content_type"}]


def _unsupported_content_type(_exc: RequestUnsupportedContentType) -> Response[Any]:
    # Powertools raises this for a body that is not JSON by its Content-Type; unhandled,
    # it was a 500. It is the caller's mistake: 400 like any other invalid request.
    _status, body = invalid_request(_NOT_JSON)
    return json_response(HTTPStatus.BAD_REQUEST, body)


def _is_json(content_type: str) -> bool:
    # What Powertools reads as JSON: application/json, with parameters or not, or no type.
    return content_type.split(";", 1)[0].strip().lower() in ("", "application/json")


_UNREADABLE = [{"loc": ("body",), "msg": "is not valid JSON", "type": "json_invalid"}]


def _readable_json(body: str) -> bool:
    """Whether the body parses: JSON nested past the recursion limit (RecursionError) or an
    integer past Python's 4,300-digit limit (ValueError) made Powertools' own parse a 500."""
    try:
        json.loads(body)
    except (ValueError, RecursionError):
        return False
    return True


def non_json_body(event: dict[str, Any]) -> dict[str, Any] | None:
    """The 400 proxy response for a body sent as anything but JSON the API can read, else ``None``.

    The API only takes JSON. Powertools would parse multipart and form bodies for
    validation (a multipart type without a boundary was a 500): refused before routing,
    they never reach that parser; nor does JSON that cannot be parsed.
    """
    raw = event.get("body")
    if not raw:
        return None
    headers = event.get("headers") or {}
    content_type = next((str(v) for k, v in headers.items() if k.lower() == "content-type"), "")
    if not _is_json(content_type):
        errors = _NOT_JSON
    elif event.get("isBase64Encoded") or _readable_json(str(raw)):
        return None
    else:
        errors = _UNREADABLE
    _status, body = invalid_request(errors)
    return {
        "statusCode": int(HTTPStatus.BAD_REQUEST),
        "multiValueHeaders": {"Content-Type": [content_types.APPLICATION_JSON]},
        "body": dumps(body),
        "isBase64Encoded": False,
    }


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


#: What a browser page may send and read across origins (template.yaml's Cors says the same to preflights).
CORS_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key"]
CORS_EXPOSED = ["Retry-After"]
CORS_MAX_AGE_S = 600


def cors_config() -> CORSConfig | None:
    """The one origin of ``CORS_ALLOW_ORIGIN`` (template parameter CorsAllowOrigin), else no CORS at all."""
    origin = CorsSettings().cors_allow_origin.strip()
    if not origin:
        return None
    return CORSConfig(
        allow_origin=origin, allow_headers=CORS_HEADERS, expose_headers=CORS_EXPOSED, max_age=CORS_MAX_AGE_S
    )


def with_cors(response: dict[str, Any], event: dict[str, Any], cors: CORSConfig | None) -> dict[str, Any]:
    """CORS headers on an answer made before the resolver (the per-key 429, an unreadable body's 400).

    The resolver adds them to what it answers; a page on the allowed origin must be able
    to read a 429's Retry-After too.
    """
    headers = response.setdefault("multiValueHeaders", {})
    if cors is None or "Access-Control-Allow-Origin" in headers:
        return response
    origin = next((str(v) for k, v in (event.get("headers") or {}).items() if k.lower() == "origin"), None)
    for name, value in cors.to_dict(origin).items():
        headers.setdefault(name, [value])
    return response


def create_app() -> APIGatewayRestResolver:
    app = APIGatewayRestResolver(enable_validation=True, cors=cors_config())
    # Registered by call, not as decorators: Powertools' exception_handler is untyped.
    app.exception_handler(RequestValidationError)(_invalid)
    app.exception_handler(RequestUnsupportedContentType)(_unsupported_content_type)
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


class RateLimit:
    """The rate limit of one function instance, built on its first request.

    Per instance rather than in the shared services: the limit is read from the
    instance's environment at its cold start, as every setting is.
    """

    def __init__(self) -> None:
        self._limiter: RateLimiter | None = None

    def limiter(self) -> RateLimiter:
        if self._limiter is None:
            settings = RateLimitSettings.from_environment()
            self._limiter = RateLimiter(
                services().dynamodb,
                settings.rate_limit_table,
                settings.rate_limit_per_minute,
                account_limit=settings.rate_limit_per_account_per_minute,
            )
        return self._limiter

    @staticmethod
    def _caller(event: dict[str, Any]) -> tuple[str, int | None] | None:
        """(key id, account id) of the request, or ``None`` when it has no caller to count (401 follows)."""
        context = (event.get("requestContext") or {}).get("authorizer") or {}
        key_id = context.get("keyId")
        if not key_id:
            return None
        account = context.get("accountId")
        # The admin key belongs to no account: its own limit only.
        return str(key_id), int(account) if account else None

    def refusal(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """``None`` if the request may go on, else the 429 proxy response to send."""
        caller = self._caller(event)
        if caller is None:
            return None
        try:
            self.limiter().hit(*caller)
        except RateLimited as exc:
            return _rate_limited(caller[0], exc)
        except DomainError as exc:  # DynamoDB unreachable: the request could not be served anyway
            logger.warning("cannot check the rate limit", extra={"code": exc.code, "reason": exc.message})
            return {
                "statusCode": int(status_of(exc)),
                "multiValueHeaders": {"Content-Type": [content_types.APPLICATION_JSON]},
                "body": dumps(error_body(exc)),
                "isBase64Encoded": False,
            }
        return None

    def deferral(self, event: dict[str, Any]) -> ratelimit.DeferredCount | None:
        """The request's count, to ride its command transaction (``evreserve.storage.ratelimit``)."""
        caller = self._caller(event)
        return None if caller is None else ratelimit.DeferredCount(self.limiter(), *caller)

    @staticmethod
    def settle(count: ratelimit.DeferredCount) -> dict[str, Any] | None:
        """Count a request no transaction counted; the 429 to answer instead if it was over the limit."""
        try:
            count.settle()
        except RateLimited as exc:
            return _rate_limited(count.key_id, exc)
        except DomainError as exc:
            # The request is answered already and changed nothing a count would have
            # prevented (a refused count leaves no command written): the answer stands.
            logger.warning("cannot count the request", extra={"code": exc.code, "reason": exc.message})
        return None


def _rate_limited(key_id: str, exc: RateLimited) -> dict[str, Any]:
    logger.info("rate limited", extra={"key_id": key_id, "retry_after_s": exc.retry_after_s})
    headers = {"Content-Type": content_types.APPLICATION_JSON, **error_headers(exc)}
    return {
        "statusCode": int(HTTPStatus.TOO_MANY_REQUESTS),
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "body": dumps(error_body(exc)),
        "isBase64Encoded": False,
    }


def lambda_handler(
    app: APIGatewayRestResolver, commands: frozenset[tuple[str, str]] = frozenset()
) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The Lambda entrypoint of a function: rate limit, logging, tracing and metrics around ``app``.

    ``commands``: the (method, resource) of its routes that send a command to a charger,
    whose rate count rides the command's transaction instead of a request of its own.
    """
    rate_limit = RateLimit()
    cors = cors_config()
    # Under SnapStart the snapshot holds the built services and the rate limiter's client.
    snapstart.install(lambda: rate_limit.limiter())

    # log_event=False whatever POWERTOOLS_LOGGER_LOG_EVENT says: the event carries the
    # caller's API key (Authorization) and, on some routes, a charger password.
    @logger.inject_lambda_context(correlation_id_path="requestContext.requestId", clear_state=True, log_event=False)
    @tracer.capture_lambda_handler(capture_response=False)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        # The commands this request sends carry its id and trace to the gateway's logs.
        with correlation.bound(logger.get_correlation_id(), os.environ.get("_X_AMZN_TRACE_ID")):
            if (event.get("httpMethod"), event.get("resource")) in commands:
                response = _with_deferred_count(app, rate_limit, event, context, cors)
            else:
                early = rate_limit.refusal(event) or non_json_body(event)
                response = with_cors(early, event, cors) if early else app.resolve(event, context)
        # One count per answer class on every invocation: what a 4xx/5xx alarm needs, and
        # no invocation flushes an empty metric set (Powertools warns on each one). Added
        # and flushed under a lock (what ``log_metrics`` does, made atomic): the metric set
        # is the module's, and the local API runs a function's requests on several threads.
        with _METRICS_LOCK:
            metrics.add_metric(name=f"Responses{int(response['statusCode']) // 100}xx", unit=MetricUnit.Count, value=1)
            metrics.flush_metrics()
        return response

    return cast(Callable[[dict[str, Any], Any], dict[str, Any]], handler)


def _with_deferred_count(
    app: APIGatewayRestResolver, rate_limit: RateLimit, event: dict[str, Any], context: Any, cors: CORSConfig | None
) -> dict[str, Any]:
    """Answer a command route, its rate count carried by the command transaction or settled after."""
    count = rate_limit.deferral(event)
    early = non_json_body(event)
    if count is None:
        return with_cors(early, event, cors) if early else app.resolve(event, context)
    if early:
        response = early
    else:
        with ratelimit.deferred(count):
            response = app.resolve(event, context)
    refused = rate_limit.settle(count)
    # with_cors leaves the resolver's own CORS headers as they are.
    return with_cors(refused or response, event, cors)
