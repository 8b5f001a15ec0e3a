"""The client: one service's operations as methods, retries, a pool of connections."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import random
import re
import select
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from contextlib import AbstractContextManager
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
from .exchange import Connection, Malformed


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
    #: The first retry's mean wait after a transient error (a throttled one waits up to 1 s).
    transient_backoff_s: float = 0.05


DYNAMODB = Service(
    "dynamodb", "DynamoDB_20120810", "1.0", "DYNAMODB", crc32=True, blobs=True, transient_backoff_s=0.025
)
SQS = Service("sqs", "AmazonSQS", "1.0", "SQS", query_compatible=True)
EVENTBRIDGE = Service("events", "AWSEvents", "1.1", "EVENTBRIDGE")

#: botocore's standard retry mode: the codes it takes for throttling...
THROTTLING_CODES = frozenset(
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
    }
)
#: ... and the ones it retries as transient, with these statuses and any failure on the way.
TRANSIENT_CODES = frozenset(
    {"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete", "CRC32CheckFailed"}
)
TRANSIENT_STATUS = frozenset({500, 502, 503, 504})
THROTTLING_STATUS = 429
MAX_BACKOFF_S = 20.0
#: How far past the computed backoff an ``x-amz-retry-after`` hint may push a retry.
RETRY_AFTER_MAX_EXTRA_S = 5.0


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
    RETRY_COST = 14
    THROTTLING_RETRY_COST = 5

    def __init__(self) -> None:
        self._available = self.CAPACITY
        self._lock = threading.Lock()

    def acquire(self, *, throttling: bool) -> int:
        """The tokens a retry took, or 0 when the quota is spent (then no retry)."""
        cost = self.THROTTLING_RETRY_COST if throttling else self.RETRY_COST
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
    retry_after_ms: str | None = None


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
        self._credentials = credentials or _ENVIRONMENT_CREDENTIALS
        # botocore's opt-in for SQS: error codes of the Query protocol, whatever SQS speaks next.
        self._extra = {"x-amzn-query-mode": "true"} if service.query_compatible else None
        self._sleep = sleep
        self._quota = RetryQuota()
        self._pool: list[Connection] = []
        self._pool_lock = threading.Lock()

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
        observer = _OBSERVER[0] if _OBSERVER else None
        if observer is None:
            return self._call(operation, params)
        with observer(self, operation, params) as answered:
            result = self._call(operation, params)
            answered(result)
            return result

    def _call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
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
            retryable, throttling = self._retryable(error, answer)
            spent = self._quota.acquire(throttling=throttling) if retryable and attempt < self._max_attempts else 0
            if not spent:
                if isinstance(error, ClientError):
                    error.response["ResponseMetadata"]["RetryAttempts"] = attempt - 1
                raise error
            self._sleep(self._backoff(attempt, throttling, answer))
            attempt += 1

    def _backoff(self, attempt: int, throttling: bool, answer: Answer | None) -> float:
        """botocore's: ``random() * min(scale * 2**(attempt-1), 20)``, the scale 1 s when
        throttled, else the service's; a server's ``x-amz-retry-after`` (ms) may lengthen it."""
        scale = 1.0 if throttling else self.service.transient_backoff_s
        delay: float = random.random() * min(scale * 2.0 ** (attempt - 1), MAX_BACKOFF_S)
        hint = answer.retry_after_ms if answer is not None else None
        if hint is not None and hint.isdigit():
            delay = max(delay, min(int(hint) / 1000, RETRY_AFTER_MAX_EXTRA_S + delay))
        return delay

    def _retryable(self, error: AwsError, answer: Answer | None) -> tuple[bool, bool]:
        """Whether to retry, and whether it was throttling (it waits longer and costs less quota)."""
        if isinstance(error, TransportError):
            return True, False
        assert isinstance(error, ClientError) and answer is not None
        code = error.response["Error"]["Code"]
        if code in THROTTLING_CODES or answer.status == THROTTLING_STATUS:
            return True, True
        return answer.status in TRANSIENT_STATUS or code in TRANSIENT_CODES, False

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
        # As botocore: "aws.protocoltests#Code:http://..." is Code; no JSON, the status.
        code = str(document.pop("__type", "") or document.pop("code", "") or answer.status)
        code = code.split(":", 1)[0].rsplit("#", 1)[-1]
        if self.service.query_compatible and answer.query_error:
            parts = answer.query_error.split(";")
            if len(parts) == 2 and parts[0]:
                code = parts[0]
        message = document.pop("message", None) or document.pop("Message", None) or ""
        if self.service.blobs:
            document = _blobs(document)
        return ClientError(
            {**document, "Error": {"Code": code, "Message": str(message)}, "ResponseMetadata": metadata}, operation
        )

    def _send(self, body: bytes, target: str) -> Answer:
        headers = self._signer.headers(
            body, self._content_type, target, self._credentials(), dt.datetime.now(dt.UTC), self._extra
        )
        head = "".join([_REQUEST_LINE, *(f"\r\n{name}: {value}" for name, value in headers.items())])
        # A line break in a value (an operation name, a token) would add headers of its own.
        if _UNSAFE.search("".join([*headers, *headers.values()])):
            raise ValueError(f"a header of the {target} request holds a line break or NUL")
        request = head.encode("latin-1")
        conn = self._connection()
        try:
            answer = conn.exchange(request, body)
        except TimeoutError as exc:
            conn.close()
            raise ReadTimeout(f"no answer from {self.endpoint} within {self._read_timeout} s") from exc
        except (Malformed, OSError) as exc:
            conn.close()
            raise ConnectionClosed(f"connection to {self.endpoint} failed: {exc!r}") from exc
        except BaseException:
            conn.close()
            raise
        if answer.reusable:
            self._release(conn)
        else:
            conn.close()
        get = answer.headers.get
        return Answer(
            answer.status,
            answer.body,
            get("x-amzn-requestid") or "",
            get("x-amzn-query-error"),
            get("x-amz-crc32"),
            get("x-amz-retry-after"),
        )

    def _connection(self) -> Connection:
        while True:
            with self._pool_lock:
                conn = self._pool.pop() if self._pool else None
            if conn is None:
                return self._connect()
            if not _dropped(conn.sock):
                return conn
            conn.close()

    def _release(self, conn: Connection) -> None:
        with self._pool_lock:
            if len(self._pool) < self._max_pool:
                self._pool.append(conn)
                return
        conn.close()

    def _connect(self) -> Connection:
        try:
            return Connection.open(
                self._host,
                self._port,
                connect_timeout=self._connect_timeout,
                read_timeout=self._read_timeout,
                tls=_tls_context() if self._https else None,
            )
        except TimeoutError as exc:
            raise ConnectTimeout(f"could not connect to {self.endpoint} within {self._connect_timeout} s") from exc
        except OSError as exc:
            raise EndpointUnreachable(f"could not connect to {self.endpoint}: {exc!r}") from exc


#: Every request is a POST of a JSON document to ``/``; http.client sent this encoding too,
#: so that no service compresses an answer.
_REQUEST_LINE = "POST / HTTP/1.1\r\nAccept-Encoding: identity"
_UNSAFE = re.compile("[\r\n\0]")


#: What sees every call, if anything (tracing): entered around the call with the client, the
#: operation and its parameters, it yields a callable that is handed the answer; an error
#: (``ClientError``, ``TransportError``) goes through it as an exception.
Observer = Callable[["JsonClient", str, dict[str, Any]], AbstractContextManager[Callable[[dict[str, Any]], None]]]
_OBSERVER: list[Observer] = []


def observe(observer: Observer | None) -> None:
    """Show every call of every client to ``observer`` (``None``: to nothing)."""
    _OBSERVER[:] = [observer] if observer is not None else []


#: One provider for every client: the chain's credentials (ECS, a SnapStart restore without
#: keys in the environment) are fetched once, not once per client.
_ENVIRONMENT_CREDENTIALS = EnvironmentCredentials()
_TLS: list[ssl.SSLContext] = []
_TLS_LOCK = threading.Lock()


def _tls_context() -> ssl.SSLContext:
    """One context for every client (loading the CA bundle takes ~30 ms), built at first use."""
    with _TLS_LOCK:
        if not _TLS:
            _TLS.append(ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE") or None))
        return _TLS[0]


def _dropped(sock: socket.socket) -> bool:
    """A kept connection the other end closed (or that has stray bytes) is readable while idle.

    poll, not select: the gateway holds thousands of sockets, and select() refuses any
    descriptor past 1023 (every kept connection would look dropped)."""
    poller = select.poll()
    try:
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True
