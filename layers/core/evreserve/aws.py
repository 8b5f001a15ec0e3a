"""Building AWS clients, and turning transport failures into domain errors.

Clients are injected into the adapters; this module only builds the default ones,
with timeouts short enough that a down DynamoDB or SQS gives a clear error fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from .errors import DependencyUnavailable
from .settings import AwsSettings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

#: Error codes AWS returns when it is overloaded or throttling: retryable, not the caller's fault.
#: A TransactionConflictException is a write that met an item inside another transaction.
_THROTTLING = frozenset(
    {
        "TransactionConflictException",
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)


def client_config(settings: AwsSettings, *, validate: bool = True) -> Config:
    return Config(
        region_name=settings.region,
        parameter_validation=validate,
        connect_timeout=settings.aws_connect_timeout_s,
        read_timeout=settings.aws_read_timeout_s,
        retries={"max_attempts": settings.aws_max_attempts, "mode": "standard"},
        max_pool_connections=settings.aws_max_pool_connections,
    )


def dynamodb_client(
    settings: AwsSettings, session: boto3.session.Session | None = None, *, validate: bool = True
) -> DynamoDBClient:
    """``validate=False`` skips botocore's walk over every parameter: for requests the code
    builds whole (the message log's batches), where the walk is most of the client's CPU."""
    return (session or boto3.session.Session()).client("dynamodb", config=client_config(settings, validate=validate))


def events_client(settings: AwsSettings, session: boto3.session.Session | None = None) -> Any:
    """EventBridge (``AWS_ENDPOINT_URL_EVENTBRIDGE`` points it at a local stand-in)."""
    return (session or boto3.session.Session()).client("events", config=client_config(settings))


def sqs_client(settings: AwsSettings, session: boto3.session.Session | None = None) -> SQSClient:
    # Clients built on one session share what it loaded (endpoints, partitions, retry
    # rules): a second client on a new session costs ~4x one on the same session.
    return (session or boto3.session.Session()).client("sqs", config=client_config(settings))


def error_code(exc: ClientError) -> str:
    code: Any = exc.response.get("Error", {}).get("Code", "")
    return str(code)


@contextmanager
def unavailable_on_transport_errors(service: str) -> Iterator[None]:
    """Re-raise connection failures, timeouts and throttling as ``DependencyUnavailable``."""
    try:
        yield
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError) as exc:
        raise DependencyUnavailable(f"{service} is unreachable", service=service) from exc
    except ClientError as exc:
        if error_code(exc) in _THROTTLING:
            raise DependencyUnavailable(f"{service} is overloaded", service=service) from exc
        raise
    except BotoCoreError as exc:
        raise DependencyUnavailable(f"{service} failed: {exc}", service=service) from exc
