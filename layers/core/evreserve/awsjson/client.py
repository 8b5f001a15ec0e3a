"""The client: one service's operations as methods, retries, a pool of connections."""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import os
import random
import select
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .auth import Credentials, EnvironmentCredentials, Signer
from .errors import (
    AwsError,
    ClientError,
    ConnectionClosed,
    ConnectTimeout,
    EndpointUnreachable,
    ReadTimeout,
    TransportError,
)


@dataclass(frozen=True)
class Service:
    """What differs between the services: the wire names, never the protocol."""

    signing_name: str
    target_prefix: str
    json_version: str
    #: The suffix of ``AWS_ENDPOINT_URL_<...>`` (botocore's service id, upper case).
    endpoint_variable: str
    crc32: bool = False
    #: SQS answers errors in JSON, with the former Query protocol's code in a header.
    query_compatible: bool = False
    #: DynamoDB's attribute values carry blobs as base64 (``{"B": ...}``).
    blobs: bool = False


DYNAMODB = Service("dynamodb", "DynamoDB_20120810", "1.0", "DYNAMODB", crc32=True, blobs=True)
SQS = Service("sqs", "AmazonSQS", "1.0", "SQS", query_compatible=True)
EVENTBRIDGE = Service("events", "AWSEvents", "1.1", "EVENTBRIDGE")

#: botocore's standard retry mode: the codes it retries (throttling and transient).
RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
RETRYABLE_STATUS = frozenset({500, 502, 503, 504})
MAX_BACKOFF_S = 20.0


def endpoint_url(service: Service, region: str) -> str:
    url = os.environ.get(f"AWS_ENDPOINT_URL_{service.endpoint_variable}") or os.environ.get("AWS_ENDPOINT_URL")
    if url:
        return url
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://{service.signing_name}.{region}.{suffix}"


class RetryQuota:
    """botocore's standard-mode quota: retries spend tokens and successes earn them back,
    so an outage does not multiply every caller's requests by the attempts."""

    CAPACITY = 500
    RETRY_COST = 5
    TIMEOUT_RETRY_COST = 10

    def __init__(self) -> None:
        self._available = self.CAPACITY
        self._lock = threading.Lock()

    def acquire(self, *, timeout: bool) -> int:
        """The tokens a retry took, or 0 when the quota is spent (then no retry)."""
        cost = self.TIMEOUT_RETRY_COST if timeout else self.RETRY_COST
        with self._lock:
            if cost > self._available:
                return 0
            self._available -= cost
            return cost

    def release(self, amount: int) -> None:
        with self._lock:
            self._available = min(self.CAPACITY, self._available + amount)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dt.datetime):
        return value.timestamp()
    raise TypeError(f"{type(value).__name__} is not a JSON value for AWS")


def _blobs(value: Any) -> Any:
    """DynamoDB's ``{"B": "<base64>"}`` and ``{"BS": [...]}`` as bytes, as botocore gives them."""
    if isinstance(value, dict):
        if len(value) == 1:
            if isinstance(b := value.get("B"), str):
                return {"B": base64.b64decode(b)}
            if isinstance(bs := value.get("BS"), list):
                return {"BS": [base64.b64decode(b) for b in bs]}
        return {k: _blobs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_blobs(v) for v in value]
    return value


def operation_name(method: str) -> str:
    return "".join(part.capitalize() for part in method.split("_"))


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, before it is judged (an error? intact?) and parsed."""

    status: int
    body: bytes
    request_id: str
    query_error: str | None
    crc32: str | None


class JsonClient:
    """One service's client. Thread-safe: connections are kept in a pool, one per request
    in flight, up to ``max_pool`` kept open (more are opened and closed as needed)."""

    def __init__(
        self,
        service: Service,
        *,
        region: str,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        max_attempts: int = 3,
        max_pool: int = 10,
        endpoint: str | None = None,
        credentials: Callable[[], Credentials] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.service = service
        self.region = region
        self.endpoint = endpoint or endpoint_url(service, region)
        url = urlsplit(self.endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) endpoint: {self.endpoint!r}")
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if self._https else 80)
        host_header = url.netloc.rsplit("@", 1)[-1]
        self._signer = Signer(region, service.signing_name, host_header)
        self._content_type = f"application/x-amz-json-{service.json_version}"
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_attempts = max_attempts
        self._max_pool = max_pool
        self._credentials = credentials or EnvironmentCredentials()
        self._sleep = sleep
        self._quota = RetryQuota()
        self._pool: list[http.client.HTTPConnection] = []
        self._pool_lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None

    def __getattr__(self, method: str) -> Callable[..., dict[str, Any]]:
        if method.startswith("_"):
            raise AttributeError(method)
        operation = operation_name(method)

        def call(**params: Any) -> dict[str, Any]:
            return self.call(operation, params)

        call.__name__ = method
        # Found by __getattr__ once; the instance attribute answers every later lookup.
        self.__dict__[method] = call
        return call

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, []
        for conn in pool:
            conn.close()

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(params, default=_json_default, separators=(",", ":")).encode()
        target = f"{self.service.target_prefix}.{operation}"
        attempt = 1
        spent = 0
        while True:
            answer: Answer | None = None
            error: AwsError | None = None
            try:
                answer = self._send(body, target)
                if answer.status >= 300 or not self._intact(answer):
                    error = self._error(answer, operation)
            except TransportError as exc:
                error = exc
            if error is None:
                assert answer is not None
                # As botocore: a success gives back what its retry spent, or earns one token.
                self._quota.release(spent or 1)
                return self._result(answer, attempt)
            retryable, timeout = self._retryable(error, answer)
            spent = self._quota.acquire(timeout=timeout) if retryable and attempt < self._max_attempts else 0
            if not spent:
                if isinstance(error, ClientError):
                    error.response["ResponseMetadata"]["RetryAttempts"] = attempt - 1
                raise error
            self._sleep(min(random.random() * 2 ** (attempt - 1), MAX_BACKOFF_S))
            attempt += 1

    def _retryable(self, error: AwsError, answer: Answer | None) -> tuple[bool, bool]:
        if isinstance(error, TransportError):
            return True, isinstance(error, ReadTimeout | ConnectTimeout)
        assert isinstance(error, ClientError) and answer is not None
        code = error.response["Error"]["Code"]
        return answer.status in RETRYABLE_STATUS or code in RETRYABLE_CODES or code == "CRC32CheckFailed", False

    def _intact(self, answer: Answer) -> bool:
        if not self.service.crc32 or answer.crc32 is None:
            return True
        return str(zlib.crc32(answer.body)) == answer.crc32

    def _result(self, answer: Answer, attempt: int) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(answer.body) if answer.body else {}
        # Walk the answer for blobs only when it has one ('"BOOL"' would match '"B').
        if self.service.blobs and (b'"B":' in answer.body or b'"BS":' in answer.body):
            parsed = _blobs(parsed)
        parsed["ResponseMetadata"] = {
            "RequestId": answer.request_id,
            "HTTPStatusCode": answer.status,
            "RetryAttempts": attempt - 1,
        }
        return parsed

    def _error(self, answer: Answer, operation: str) -> ClientError:
        metadata = {"RequestId": answer.request_id, "HTTPStatusCode": answer.status}
        if answer.status < 300:
            error = {"Code": "CRC32CheckFailed", "Message": "the answer's CRC32 does not match its body"}
            return ClientError({"Error": error, "ResponseMetadata": metadata}, operation)
        try:
            document = json.loads(answer.body) if answer.body else {}
        except ValueError:
            document = {}
        if not isinstance(document, dict):
            document = {}
        code = str(document.pop("__type", "") or document.pop("code", "") or http.client.responses.get(answer.status))
        code = code.rsplit("#", 1)[-1]
        if self.service.query_compatible and answer.query_error:
            code = answer.query_error.split(";", 1)[0]
        message = document.pop("message", None) or document.pop("Message", None) or ""
        if self.service.blobs:
            document = _blobs(document)
        return ClientError(
            {**document, "Error": {"Code": code, "Message": str(message)}, "ResponseMetadata": metadata}, operation
        )

    def _send(self, body: bytes, target: str) -> Answer:
        headers = self._signer.headers(body, self._content_type, target, self._credentials(), dt.datetime.now(dt.UTC))
        conn = self._connection()
        try:
            conn.request("POST", "/", body, headers)
            response = conn.getresponse()
            data = response.read()
        except TimeoutError as exc:
            conn.close()
            raise ReadTimeout(f"no answer from {self.endpoint} within {self._read_timeout} s") from exc
        except (http.client.HTTPException, OSError) as exc:
            conn.close()
            raise ConnectionClosed(f"connection to {self.endpoint} failed: {exc!r}") from exc
        if response.will_close:
            conn.close()
        else:
            self._release(conn)
        return Answer(
            response.status,
            data,
            response.getheader("x-amzn-RequestId") or "",
            response.getheader("x-amzn-query-error"),
            response.getheader("x-amz-crc32"),
        )

    def _connection(self) -> http.client.HTTPConnection:
        while True:
            with self._pool_lock:
                conn = self._pool.pop() if self._pool else None
            if conn is None:
                return self._connect()
            if conn.sock is not None and not _dropped(conn.sock):
                return conn
            conn.close()

    def _release(self, conn: http.client.HTTPConnection) -> None:
        with self._pool_lock:
            if len(self._pool) < self._max_pool:
                self._pool.append(conn)
                return
        conn.close()

    def _connect(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self._https:
            if self._ssl is None:
                self._ssl = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE") or None)
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=self._connect_timeout, context=self._ssl)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._connect_timeout)
        try:
            conn.connect()
        except TimeoutError as exc:
            conn.close()
            raise ConnectTimeout(f"could not connect to {self.endpoint} within {self._connect_timeout} s") from exc
        except OSError as exc:
            conn.close()
            raise EndpointUnreachable(f"could not connect to {self.endpoint}: {exc!r}") from exc
        assert conn.sock is not None
        conn.sock.settimeout(self._read_timeout)
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn


def _dropped(sock: socket.socket) -> bool:
    """A kept connection the other end closed (or that has stray bytes) is readable while idle."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
