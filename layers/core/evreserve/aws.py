"""Building AWS clients, and turning transport failures into domain errors.

Clients are injected into the adapters; this module only builds the default ones,
with timeouts short enough that a down DynamoDB or SQS gives a clear error fast.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from . import awsjson
from .awsjson import AwsError, ClientError, TransportError
from .errors import DependencyUnavailable
from .settings import AwsSettings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

__all__ = ["AwsError", "ClientError", "TransportError", "adopt", "error_code", "unavailable_on_transport_errors"]

#: Error codes AWS returns when it is overloaded or throttling: retryable, not the caller's fault.
#: The clients' throttling codes, and a TransactionConflictException (a write that met an item
#: inside another transaction) and the services' own failures.
_OVERLOADED = awsjson.THROTTLING_CODES | {"TransactionConflictException", "InternalServerError", "ServiceUnavailable"}


def client_config(settings: AwsSettings, *, validate: bool = True) -> Any:
    """botocore's ``Config`` for ``AWS_CLIENT=botocore`` (imports botocore)."""
    from botocore.config import Config

    return Config(
        region_name=settings.region,
        parameter_validation=validate,
        connect_timeout=settings.aws_connect_timeout_s,
        read_timeout=settings.aws_read_timeout_s,
        retries={"max_attempts": settings.aws_max_attempts, "mode": "standard"},
        max_pool_connections=settings.aws_max_pool_connections,
    )


#: The process's one boto3 session for ``AWS_CLIENT=botocore``: a session of its own per
#: client loads botocore's data files again (~4x the cost of a client from a loaded one).
_session: Any = None
#: A boto3 session is not safe to build clients from in two threads at once.
_session_lock = threading.Lock()


def _shared_session() -> Any:
    global _session
    if _session is None:
        import boto3

        _session = boto3.session.Session()
    return _session


def _client(
    service: awsjson.Service,
    botocore_name: str,
    settings: AwsSettings,
    session: Any,
    *,
    validate: bool = True,
    endpoint: str | None = None,
) -> Any:
    if settings.aws_client == "botocore" or session is not None:
        with _session_lock:
            built = (session or _shared_session()).client(
                botocore_name,
                config=client_config(settings, validate=validate),
                endpoint_url=endpoint,
            )
        return adopt(built)
    return awsjson.JsonClient(
        service,
        endpoint=endpoint,
        region=settings.region,
        connect_timeout=settings.aws_connect_timeout_s,
        read_timeout=settings.aws_read_timeout_s,
        max_attempts=settings.aws_max_attempts,
        max_pool=settings.aws_max_pool_connections,
    )


def dynamodb_client(
    settings: AwsSettings, session: Any = None, *, validate: bool = True, endpoint: str | None = None
) -> DynamoDBClient:
    """``AWS_CLIENT`` picks the implementation (evreserve.awsjson by default); a boto3
    ``session`` builds botocore's. ``validate=False`` skips botocore's walk over every
    parameter, for requests the code builds whole (awsjson never walks them).
    ``endpoint`` overrides ``AWS_ENDPOINT_URL_DYNAMODB``."""
    client: DynamoDBClient = _client(
        awsjson.DYNAMODB, "dynamodb", settings, session, validate=validate, endpoint=endpoint
    )
    return client


def events_client(settings: AwsSettings, session: Any = None) -> Any:
    """EventBridge (``AWS_ENDPOINT_URL_EVENTBRIDGE`` points it at a local stand-in)."""
    return _client(awsjson.EVENTBRIDGE, "events", settings, session)


def sqs_client(settings: AwsSettings, session: Any = None) -> SQSClient:
    client: SQSClient = _client(awsjson.SQS, "sqs", settings, session)
    return client


def _from_botocore(exc: BaseException) -> AwsError | None:
    """botocore's exception as this module's, or None when it is not botocore's.

    Called only with an exception in hand, so botocore is imported already if it raised."""
    if not type(exc).__module__.startswith("botocore"):
        return None
    from botocore import exceptions as bce

    if isinstance(exc, bce.ClientError):
        return ClientError(dict(exc.response), exc.operation_name)
    if isinstance(exc, bce.ConnectTimeoutError):
        return awsjson.ConnectTimeout(str(exc))
    if isinstance(exc, bce.ReadTimeoutError):
        return awsjson.ReadTimeout(str(exc))
    if isinstance(exc, bce.EndpointConnectionError):
        return awsjson.EndpointUnreachable(str(exc))
    if isinstance(exc, bce.ConnectionClosedError):
        return awsjson.ConnectionClosed(str(exc))
    if isinstance(exc, bce.ConnectionError | bce.HTTPClientError):
        return TransportError(str(exc))
    if isinstance(exc, bce.ParamValidationError):
        return None  # the code's mistake, not AWS's: raised as it is
    if isinstance(exc, bce.BotoCoreError):
        return AwsError(str(exc))
    return None


class _Botocore:
    """A botocore client raising this module's errors, so the code catches one family
    whichever client it was given (``AWS_CLIENT=botocore``, tests' boto3 clients)."""

    def __init__(self, client: Any) -> None:
        self.wrapped = client

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.wrapped, name)
        if name.startswith("_") or name in ("meta", "exceptions") or not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attribute(*args, **kwargs)
            except Exception as exc:
                translated = _from_botocore(exc)
                if translated is None:
                    raise
                raise translated from exc

        self.__dict__[name] = call
        return call


def adopt(client: Any) -> Any:
    """Any client the code is handed: a botocore one is wrapped, others (awsjson's, a
    test's fake) are used as they are. botocore's classes are built at run time in
    ``botocore.client``, so the check needs no import of botocore."""
    if type(client).__module__ == "botocore.client":
        return _Botocore(client)
    return client


def queue_is_gone(exc: ClientError) -> bool:
    """SQS's answer for a queue that does not exist (the Query and JSON protocols spell it differently)."""
    code = error_code(exc)
    return "NonExistentQueue" in code or "QueueDoesNotExist" in code


def error_code(exc: ClientError) -> str:
    code: Any = exc.response.get("Error", {}).get("Code", "")
    return str(code)


@contextmanager
def unavailable_on_transport_errors(service: str) -> Iterator[None]:
    """Re-raise connection failures, timeouts and throttling as ``DependencyUnavailable``;
    other errors of the service as ``evreserve.aws.ClientError`` (a botocore client's too)."""
    try:
        yield
    except AwsError as exc:
        _raise_translated(service, exc, exc)
    except Exception as exc:
        translated = _from_botocore(exc)
        if translated is None:
            raise
        _raise_translated(service, translated, exc)


def _raise_translated(service: str, error: AwsError, cause: BaseException) -> None:
    if isinstance(error, ClientError):
        code = error_code(error)
        if code in _OVERLOADED:
            raise DependencyUnavailable(f"{service} is overloaded", service=service) from cause
        if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500:
            # The service (or a proxy before it) failed, past the client's retries: not the caller's fault.
            raise DependencyUnavailable(f"{service} failed ({code})", service=service) from cause
        if error is cause:
            raise error
        raise error from cause
    if isinstance(error, TransportError):
        raise DependencyUnavailable(f"{service} is unreachable", service=service) from cause
    raise DependencyUnavailable(f"{service} failed: {error}", service=service) from cause
