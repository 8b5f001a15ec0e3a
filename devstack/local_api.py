"""The local API: API Gateway (REST API, Lambda proxy integration) in front of the functions.

``sam local start-api`` needs Docker, which this machine lacks, so this module plays
the part for ``make run`` and the tests. It reads ``template.yaml`` (the functions, their
``Api`` events, the API's Lambda authorizer and gateway responses) and serves HTTP on
127.0.0.1 the way the deployed API answers:

1. Route: the most specific template path wins (a literal segment over ``{param}`` over
   ``{proxy+}``, an exact method over ``ANY``). No route: MISSING_AUTHENTICATION_TOKEN,
   API Gateway's 403 unless the template's gateway responses say otherwise.
2. Authorize: a missing identity source is a 401 without calling the authorizer; an
   authorizer raising ``Exception("Unauthorized")`` is a 401, any other failure a 500;
   the returned policy is cached by identity source for ``ReauthorizeEvery`` seconds and
   evaluated against each request's method ARN (so, as deployed, a policy naming one
   method and cached serves or denies the next request by that ARN); no Allow is a 403.
   The principal's ``context`` (values stringified, as API Gateway does) becomes
   ``requestContext.authorizer``.
3. Integrate: a REST (payload 1.0) proxy event goes to an instance of the function (see
   :mod:`devstack.lambda_runtime`); its answer must be a valid proxy response. A function
   error, a Lambda timeout or a malformed answer is a 502 ``Internal server error``;
   API Gateway's own integration timeout (29 s) is a 504 ``Endpoint request timed out``.

Gateway responses (401, 403, 404, 5xx from the gateway itself) take the status, body
template and headers the template declares for the type, else for DEFAULT_4XX /
DEFAULT_5XX, else API Gateway's defaults.

Intrinsics in the functions' environment are resolved from the process environment, the
one place the local stack publishes its resources: a variable the process environment
already holds keeps that value (the local stack's ``GATEWAY_QUEUE_PREFIX`` over the
template's ``!Sub "${Stage}-evreserve-gw-"``); otherwise ``!Ref RegistryTable`` is
``os.environ["REGISTRY_TABLE"]`` through :data:`evreserve.resources.TABLE_ENV` (queues
through ``QUEUE_ENV``), ``!Ref <Parameter>`` its default (or an override), pseudo
parameters fixed local values, ``!Sub`` / ``!Join`` of those; anything else is left out of
the environment with a warning, as ``sam local`` does. Literal values are the template's,
but for one declared empty (``""``), which the process environment fills when it can
(the AWS endpoints: what ``sam local``'s env.json does).

Run alone with ``python -m devstack.local_api`` (the AWS endpoints and table names must
already be in the environment); tests and ``make run`` use :class:`LocalApi`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import functools
import json
import logging
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qsl, unquote, urlsplit

from devstack import lambda_invoke
from devstack.lambda_runtime import (
    ACCOUNT_ID,
    DEFAULT_MAX_INSTANCES,
    FunctionEnvironment,
    FunctionPool,
    FunctionSpec,
    Invocation,
    add_code_uri_to_path,
)
from devstack.queue_sources import QueuePoller, QueueSource, queue_source
from devstack.schedules import Scheduler, ScheduleSource, schedule_source
from devstack.streams import StreamPoller, StreamSource, stream_source
from devstack.template import TEMPLATE_PATH, Template, as_intrinsic, load_template
from evreserve.resources import DESTINATION_QUEUE_ENV, QUEUE_ENV, TABLE_ENV

# Named, not __name__: under `python -m devstack.local_api` that would be "__main__".
log = logging.getLogger("devstack.local_api")

HOST = "127.0.0.1"
DEFAULT_PORT = 3000
API_ID = "local"
#: API Gateway's default maximum integration timeout for REST APIs.
INTEGRATION_TIMEOUT_S = 29.0
#: API Gateway's payload limit; bigger requests get REQUEST_TOO_LARGE.
MAX_BODY_BYTES = 10 * 1024 * 1024
FUNCTION_TYPE = "AWS::Serverless::Function"
API_TYPE = "AWS::Serverless::Api"
#: The API SAM creates for Api events that name no RestApiId.
IMPLICIT_API = "ServerlessRestApi"
#: SAM's defaults when neither the function nor Globals sets them.
SAM_DEFAULT_TIMEOUT_S = 3.0
SAM_DEFAULT_MEMORY_MB = 128
DEFAULT_AUTHORIZER_TTL_S = 300
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


# --- the template -----------------------------------------------------------------------


class Unresolvable(Exception):
    """An intrinsic that has no meaning without a deployed stack."""


class IntrinsicResolver:
    """Turns the intrinsics the functions' configuration may use into local values."""

    def __init__(
        self,
        template: Template,
        environ: Mapping[str, str],
        parameters: Mapping[str, str] | None = None,
        region: str = "us-east-1",
    ) -> None:
        self._resources: Mapping[str, Any] = template.get("Resources") or {}
        self._environ = environ
        self.parameters: dict[str, str] = {
            name: _scalar(spec["Default"])
            for name, spec in (template.get("Parameters") or {}).items()
            if isinstance(spec, dict) and "Default" in spec
        }
        self.parameters.update(parameters or {})
        self._pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "local",
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{ACCOUNT_ID}:stack/local/local",
        }

    def resolve(self, value: Any) -> str:
        """``value`` as a string; raises :class:`Unresolvable` for what has no local value."""
        intrinsic = as_intrinsic(value)
        if intrinsic is None:
            if isinstance(value, dict | list):
                raise Unresolvable(f"{value!r} is not a scalar")
            return _scalar(value)
        if intrinsic.fn == "Ref":
            return self._ref(str(intrinsic.args))
        if intrinsic.fn == "Sub":
            return self._sub(intrinsic.args)
        if intrinsic.fn == "Join" and isinstance(intrinsic.args, list) and len(intrinsic.args) == 2:
            delimiter, parts = intrinsic.args
            if isinstance(parts, list):
                return str(delimiter).join(self.resolve(part) for part in parts)
        raise Unresolvable(f"!{intrinsic.fn} {intrinsic.args!r} has no local value")

    def _ref(self, name: str) -> str:
        if name in self.parameters:
            return self.parameters[name]
        if name in self._pseudo:
            return self._pseudo[name]
        # The local stack exports each table's / queue's physical name under the same
        # variable the code reads it from; that mapping is the core's, not ours.
        var = TABLE_ENV.get(name) or QUEUE_ENV.get(name)
        if var is not None:
            if var in self._environ:
                return self._environ[var]
            raise Unresolvable(f"!Ref {name}: {var} is not set (is the local AWS stack running?)")
        if name in self._resources:
            raise Unresolvable(f"!Ref {name}: no local value for a {self._resources[name].get('Type')}")
        raise Unresolvable(f"!Ref {name}: no such parameter or resource")

    def _sub(self, args: Any) -> str:
        text, variables = (args, {}) if isinstance(args, str) else (args[0], args[1])

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):  # ${!Literal} is the escape for a literal ${Literal}
                return "${" + name[1:] + "}"
            if name in variables:
                return self.resolve(variables[name])
            if "." in name:
                raise Unresolvable(f"!Sub ${{{name}}}: attributes have no local value")
            return self._ref(name)

        return re.sub(r"\$\{([^}]+)\}", replace, str(text))


def _scalar(value: Any) -> str:
    # YAML reads `true` as a bool where CloudFormation would pass the string "true".
    return str(value).lower() if isinstance(value, bool) else str(value)


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's Globals rule: maps merge key by key, anything else in the resource wins."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and as_intrinsic(value) is None:
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _logical_id(value: Any) -> str | None:
    """The logical id in ``!Ref X``, ``!GetAtt X.Arn``, SAM's ``!Ref X.Alias`` / ``X.Version`` or a bare ``X``.

    Locally there are no published versions: an alias or version of a function is it.
    """
    intrinsic = as_intrinsic(value)
    if intrinsic is None:
        return value if isinstance(value, str) else None
    if intrinsic.fn == "Ref":
        return str(intrinsic.args).removesuffix(".Alias").removesuffix(".Version")
    if intrinsic.fn == "GetAtt" and isinstance(intrinsic.args, list) and intrinsic.args:
        return str(intrinsic.args[0])
    return None


@dataclass(frozen=True)
class AuthorizerSpec:
    """A Lambda authorizer of the API (SAM ``Auth.Authorizers`` entry)."""

    name: str
    function_id: str
    payload_type: Literal["TOKEN", "REQUEST"]
    headers: tuple[str, ...] = ()
    query_strings: tuple[str, ...] = ()
    ttl_s: int = DEFAULT_AUTHORIZER_TTL_S
    #: TOKEN authorizers only: the token must match it, or the caller gets a 401.
    validation_expression: str | None = None


@dataclass(frozen=True)
class GatewayResponseSpec:
    status: int | None = None
    #: content type -> VTL body template.
    templates: Mapping[str, str] = field(default_factory=dict)
    #: header name -> ``'static'`` or ``method.request.header.X``.
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ApiSpec:
    logical_id: str
    stage: str
    authorizers: Mapping[str, AuthorizerSpec] = field(default_factory=dict)
    gateway_responses: Mapping[str, GatewayResponseSpec] = field(default_factory=dict)
    binary_media_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class Route:
    api: ApiSpec
    path: str
    method: str  # upper case, or ANY
    function_id: str
    #: Name of the authorizer in ``api.authorizers``; None for an open method.
    authorizer: str | None

    @functools.cached_property
    def segments(self) -> tuple[str, ...]:
        return _segments(self.path)


@dataclass
class ApiDefinition:
    """Everything the local API serves, read from one template."""

    functions: dict[str, FunctionSpec]
    apis: dict[str, ApiSpec]
    routes: list[Route]
    warnings: list[str] = field(default_factory=list)
    #: Functions fed by a table's stream (``Type: DynamoDB`` events), run by ``devstack.streams``.
    stream_sources: list[StreamSource] = field(default_factory=list)
    #: Functions run on a ``rate(...)`` schedule (``Type: Schedule``), run by ``devstack.schedules``.
    schedules: list[ScheduleSource] = field(default_factory=list)
    #: Functions fed by a queue (``Type: SQS`` events), run by ``devstack.queue_sources``.
    queue_sources: list[QueueSource] = field(default_factory=list)


def _getatt(value: Any) -> tuple[str, str] | None:
    intrinsic = as_intrinsic(value)
    if intrinsic is None or intrinsic.fn != "GetAtt":
        return None
    logical_id, attribute = list(intrinsic.args)[:2]
    return str(logical_id), str(attribute)


def read_template(
    template: Template,
    base_dir: Path,
    environ: Mapping[str, str],
    *,
    parameters: Mapping[str, str] | None = None,
    region: str = "us-east-1",
) -> ApiDefinition:
    """The functions, APIs and routes of ``template``; CodeUris relative to ``base_dir``."""
    resolver = IntrinsicResolver(template, environ, parameters, region)
    warnings: list[str] = []
    resources: Mapping[str, Any] = template.get("Resources") or {}
    globals_: Mapping[str, Any] = template.get("Globals") or {}

    functions: dict[str, FunctionSpec] = {}
    events: dict[str, Mapping[str, Any]] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != FUNCTION_TYPE:
            continue
        props = _merge(globals_.get("Function") or {}, resource.get("Properties") or {})
        code_uri, handler = props.get("CodeUri"), props.get("Handler")
        if not isinstance(code_uri, str) or not isinstance(handler, str) or "." not in handler:
            warnings.append(f"{logical_id}: needs a local CodeUri and a module.function Handler; not served")
            continue
        variables = ((props.get("Environment") or {}).get("Variables")) or {}
        environment: dict[str, str] = {}
        for name, value in variables.items():
            try:
                if (as_intrinsic(value) is not None or value == "") and name in environ:
                    # An intrinsic stands for a fact of the deployment; locally the stack
                    # is the deployment, and what it exports under the same name wins
                    # (GATEWAY_QUEUE_PREFIX: the gateway reads the stack's, not !Sub's).
                    # A variable declared empty is a slot for exactly that (the AWS
                    # endpoints, which sam local's env.json fills the same way).
                    environment[name] = environ[name]
                else:
                    environment[name] = resolver.resolve(value)
            except Unresolvable as exc:
                warnings.append(f"{logical_id}: environment variable {name} left out: {exc}")
        functions[logical_id] = FunctionSpec(
            logical_id=logical_id,
            code_uri=(base_dir / code_uri).resolve(),
            handler=handler,
            timeout_s=float(props.get("Timeout", SAM_DEFAULT_TIMEOUT_S)),
            memory_mb=int(props.get("MemorySize", SAM_DEFAULT_MEMORY_MB)),
            environment=environment,
        )
        events[logical_id] = props.get("Events") or {}

    api_props: dict[str, dict[str, Any]] = {
        logical_id: _merge(globals_.get("Api") or {}, resource.get("Properties") or {})
        for logical_id, resource in resources.items()
        if resource.get("Type") == API_TYPE
    }
    apis: dict[str, ApiSpec] = {}
    default_authorizers: dict[str, str | None] = {}

    def api(logical_id: str) -> ApiSpec:
        if logical_id not in apis:
            props = api_props.get(logical_id)
            if props is None:  # SAM's implicit API: Globals.Api and stage "Prod"
                props = {"StageName": "Prod", **(globals_.get("Api") or {})}
            apis[logical_id], default_authorizers[logical_id] = _read_api(logical_id, props, resolver, warnings)
        return apis[logical_id]

    routes: list[Route] = []
    seen: dict[tuple[tuple[str, ...], str], str] = {}
    for function_id, function_events in events.items():
        for event_id, event in function_events.items():
            if event.get("Type") != "Api":
                continue
            props = event.get("Properties") or {}
            api_id = _logical_id(props.get("RestApiId")) if "RestApiId" in props else IMPLICIT_API
            path, method = props.get("Path"), str(props.get("Method", "")).upper()
            if api_id is None or not isinstance(path, str) or not method:
                warnings.append(f"{function_id}.{event_id}: needs Path, Method and a !Ref RestApiId; not served")
                continue
            method = "ANY" if method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD") else method
            spec = api(api_id)
            auth = (props.get("Auth") or {}).get("Authorizer", default_authorizers[api_id])
            authorizer = None if auth in (None, "NONE") else str(auth)
            if authorizer is not None and authorizer not in spec.authorizers:
                warnings.append(f"{function_id}.{event_id}: authorizer {authorizer} cannot run locally")
            key = (_route_key(path), method)
            if key in seen:
                warnings.append(f"{function_id}.{event_id}: {method} {path} already served by {seen[key]}")
                continue
            seen[key] = function_id
            routes.append(Route(spec, path, method, function_id, authorizer))
    for served in apis.values():
        for config in served.authorizers.values():
            if config.function_id not in functions:
                warnings.append(f"{served.logical_id}: authorizer {config.name} names no function of the template")
    streams = [
        source
        for function_id, function_events in events.items()
        for event in function_events.values()
        if event.get("Type") == "DynamoDB"
        and (source := stream_source(function_id, event.get("Properties") or {}, _getatt)) is not None
        and function_id in functions
    ]
    schedules = [
        schedule
        for function_id, function_events in events.items()
        for event in function_events.values()
        if event.get("Type") == "Schedule"
        and (schedule := schedule_source(function_id, event.get("Properties") or {})) is not None
        and function_id in functions
    ]
    queues = [
        queue
        for function_id, function_events in events.items()
        for event in function_events.values()
        if event.get("Type") == "SQS"
        and (queue := queue_source(function_id, event.get("Properties") or {}, _getatt)) is not None
        and function_id in functions
    ]
    return ApiDefinition(functions, apis, routes, warnings, streams, schedules, queues)


def _read_api(
    logical_id: str, props: Mapping[str, Any], resolver: IntrinsicResolver, warnings: list[str]
) -> tuple[ApiSpec, str | None]:
    try:
        stage = resolver.resolve(props.get("StageName", "Prod"))
    except Unresolvable as exc:
        warnings.append(f"{logical_id}: StageName: {exc}; using 'local'")
        stage = "local"
    auth = props.get("Auth") or {}
    authorizers: dict[str, AuthorizerSpec] = {}
    for name, config in (auth.get("Authorizers") or {}).items():
        function_id = _logical_id(config.get("FunctionArn"))
        if function_id is None:
            warnings.append(f"{logical_id}: authorizer {name} is not a Lambda authorizer of this template")
            continue
        identity = config.get("Identity") or {}
        payload_type = str(config.get("FunctionPayloadType", "TOKEN")).upper()
        if payload_type == "TOKEN":
            authorizers[name] = AuthorizerSpec(
                name,
                function_id,
                "TOKEN",
                headers=(str(identity.get("Header", "Authorization")),),
                ttl_s=int(identity.get("ReauthorizeEvery", DEFAULT_AUTHORIZER_TTL_S)),
                validation_expression=identity.get("ValidationExpression"),
            )
        else:
            for unsupported in ("StageVariables", "Context"):
                if identity.get(unsupported):
                    warnings.append(f"{logical_id}: authorizer {name}: {unsupported} identity sources are ignored")
            authorizers[name] = AuthorizerSpec(
                name,
                function_id,
                "REQUEST",
                headers=tuple(str(h) for h in identity.get("Headers") or ()),
                query_strings=tuple(str(q) for q in identity.get("QueryStrings") or ()),
                ttl_s=int(identity.get("ReauthorizeEvery", DEFAULT_AUTHORIZER_TTL_S)),
            )
    responses: dict[str, GatewayResponseSpec] = {}
    for response_type, config in (props.get("GatewayResponses") or {}).items():
        config = config or {}
        status = config.get("StatusCode")
        responses[str(response_type)] = GatewayResponseSpec(
            status=int(status) if status is not None else None,
            templates={str(k): str(v) for k, v in (config.get("ResponseTemplates") or {}).items()},
            headers={
                str(k): str(v) for k, v in ((config.get("ResponseParameters") or {}).get("Headers") or {}).items()
            },
        )
    spec = ApiSpec(
        logical_id=logical_id,
        stage=stage,
        authorizers=authorizers,
        gateway_responses=responses,
        binary_media_types=tuple(str(t) for t in props.get("BinaryMediaTypes") or ()),
    )
    default = auth.get("DefaultAuthorizer")
    return spec, (None if default in (None, "NONE") else str(default))


# --- routing ----------------------------------------------------------------------------


def _segments(path: str) -> tuple[str, ...]:
    return tuple(part for part in path.split("/") if part)


def _route_key(path: str) -> tuple[str, ...]:
    # Two templates paths that differ only in parameter names are the same resource.
    return tuple("{+}" if s.endswith("+}") else "{}" if s.startswith("{") else s for s in _segments(path))


class Router:
    """API Gateway's resource matching over the template's routes."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = list(routes)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The most specific route for ``method`` ``path`` and its (decoded) path parameters."""
        parts = _segments(path)
        best: tuple[tuple[int, ...], Route, dict[str, str]] | None = None
        for route in self.routes:
            if route.method not in (method, "ANY"):
                continue
            found = _match_segments(route.segments, parts)
            if found is None:
                continue
            rank, params = found
            score = (*rank, 1 if route.method == method else 0)
            if best is None or score > best[0]:
                best = (score, route, params)
        return None if best is None else (best[1], best[2])


def _match_segments(pattern: Sequence[str], parts: Sequence[str]) -> tuple[tuple[int, ...], dict[str, str]] | None:
    params: dict[str, str] = {}
    rank: list[int] = []
    for index, segment in enumerate(pattern):
        if segment.startswith("{") and segment.endswith("+}"):
            rest = parts[index:]
            if not rest:  # a greedy parameter takes one segment at least
                return None
            params[segment[1:-2]] = "/".join(unquote(p) for p in rest)
            rank.append(0)
            return tuple(rank), params
        if index >= len(parts):
            return None
        if segment.startswith("{") and segment.endswith("}"):
            params[segment[1:-1]] = unquote(parts[index])
            rank.append(1)
        elif segment == unquote(parts[index]):
            rank.append(2)  # literal segments beat parameters, whatever follows
        else:
            return None
    if len(parts) != len(pattern):
        return None
    return tuple(rank), params


# --- policies -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _iam_pattern(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    # IAM wildcards: `*` any run of characters (slashes included), `?` one character.
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, re.IGNORECASE if ignore_case else 0)


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def evaluate_policy(policy: Mapping[str, Any], method_arn: str) -> Literal["allow", "deny", "none"]:
    """IAM's rule for one resource: an explicit Deny wins, then any Allow, else no access."""
    decision: Literal["allow", "deny", "none"] = "none"
    for statement in _listify(policy.get("Statement") or []):
        if not isinstance(statement, dict):
            continue
        actions = [str(a) for a in _listify(statement.get("Action") or [])]
        resources = [str(r) for r in _listify(statement.get("Resource") or [])]
        if not any(_iam_pattern(a, True).fullmatch("execute-api:Invoke") for a in actions):
            continue
        if not any(_iam_pattern(r, False).fullmatch(method_arn) for r in resources):
            continue
        if statement.get("Effect") == "Deny":
            return "deny"
        if statement.get("Effect") == "Allow":
            decision = "allow"
    return decision


def method_arn(region: str, api: ApiSpec, method: str, path: str) -> str:
    return f"arn:aws:execute-api:{region}:{ACCOUNT_ID}:{API_ID}/{api.stage}/{method}/{path.lstrip('/')}"


# --- requests and responses ---------------------------------------------------------------


@dataclass
class HttpRequest:
    method: str
    #: The request target as sent: path and query string.
    target: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    host: str = "localhost"

    def header(self, name: str) -> str | None:
        """The last value of header ``name`` (case-insensitive), like API Gateway's ``headers``."""
        found = None
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                found = value
        return found


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    #: For the request log: the function that answered and whether it started cold.
    function: str | None = None
    cold: bool | None = None
    note: str = ""


#: Built-in status and ``$context.error.message`` of each gateway response type we emit;
#: a response type not declared in the template falls back to DEFAULT_4XX / DEFAULT_5XX.
_GATEWAY_DEFAULTS: dict[str, tuple[int, str | None, str]] = {
    "MISSING_AUTHENTICATION_TOKEN": (403, "Missing Authentication Token", "MissingAuthenticationTokenException"),
    "UNAUTHORIZED": (401, "Unauthorized", "UnauthorizedException"),
    "ACCESS_DENIED": (403, "User is not authorized to access this resource", "AccessDeniedException"),
    "AUTHORIZER_FAILURE": (500, None, "AuthorizerFailureException"),
    "AUTHORIZER_CONFIGURATION_ERROR": (500, None, "AuthorizerConfigurationException"),
    "INTEGRATION_TIMEOUT": (504, "Endpoint request timed out", "InternalServerErrorException"),
    "THROTTLED": (429, "Too Many Requests", "TooManyRequestsException"),
    "REQUEST_TOO_LARGE": (413, "Request Too Long", "RequestTooLargeException"),
}
#: Not a gateway response type of its own: a function error or malformed answer is a
#: 502 that API Gateway reports as a configuration error, shaped by DEFAULT_5XX.
_LAMBDA_ERROR = "LAMBDA_ERROR"
_GATEWAY_DEFAULTS[_LAMBDA_ERROR] = (502, "Internal server error", "InternalServerErrorException")
_DEFAULT_TEMPLATE = '{"message":$context.error.messageString}'
_PROXY_RESPONSE_KEYS = {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded", "cookies"}


@dataclass
class _Request:
    """One request as the gateway sees it: parsed once, shared by authorizer and event."""

    http: HttpRequest
    request_id: str
    path: str
    query: list[tuple[str, str]]
    started: float
    route: Route | None = None
    path_params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _CachedPolicy:
    expires: float
    principal_id: str
    policy: Mapping[str, Any]
    context: Mapping[str, str | None]


class ApiGateway:
    """The gateway logic with no sockets: :meth:`handle` turns a request into a response.

    ``functions`` are the pools the routes and authorizers invoke, by logical id.
    """

    def __init__(
        self,
        routes: Iterable[Route],
        pools: Mapping[str, FunctionPool],
        *,
        region: str = "us-east-1",
        integration_timeout_s: float = INTEGRATION_TIMEOUT_S,
        fallback_api: ApiSpec | None = None,
    ) -> None:
        self.router = Router(routes)
        self.pools = pools
        self.region = region
        self.integration_timeout_s = integration_timeout_s
        # Unmatched requests have no API of their own; they get this one's gateway
        # responses (the first API of the template, as there is one in practice).
        self._fallback_api = fallback_api or next(
            (r.api for r in self.router.routes), ApiSpec(logical_id=IMPLICIT_API, stage="Prod")
        )
        self._cache: dict[tuple[str, str, tuple[str, ...]], _CachedPolicy] = {}
        self._cache_lock = threading.Lock()
        #: How many times each authorizer function ran (tests check the cache with it).
        self.authorizer_calls = 0

    def handle(self, http: HttpRequest) -> HttpResponse:
        target = urlsplit(http.target)
        request = _Request(
            http=http,
            request_id=str(uuid.uuid4()),
            path=unquote(target.path) or "/",
            query=parse_qsl(target.query, keep_blank_values=True),
            started=time.time(),
        )
        if len(http.body) > MAX_BODY_BYTES:
            return self._gateway_response(self._fallback_api, "REQUEST_TOO_LARGE", request)
        invoked = lambda_invoke.invoke(self.pools, http, request.path)
        if invoked is not None:
            return invoked
        matched = self.router.match(http.method, request.path)
        if matched is None:
            return self._gateway_response(self._fallback_api, "MISSING_AUTHENTICATION_TOKEN", request)
        request.route, request.path_params = matched
        authorizer_context: dict[str, Any] | None = None
        if request.route.authorizer is not None:
            outcome = self._authorize(request)
            if isinstance(outcome, HttpResponse):
                return outcome
            authorizer_context = outcome
        return self._integrate(request, authorizer_context)

    # -- authorizer ------------------------------------------------------------------

    def _authorize(self, request: _Request) -> dict[str, Any] | HttpResponse:
        route = request.route
        assert route is not None and route.authorizer is not None
        api = route.api
        authorizer = api.authorizers.get(route.authorizer)
        if authorizer is None or authorizer.function_id not in self.pools:
            return self._gateway_response(api, "AUTHORIZER_CONFIGURATION_ERROR", request)
        identity = self._identity(request, authorizer)
        if identity is None:
            return self._gateway_response(api, "UNAUTHORIZED", request)
        arn = method_arn(self.region, api, request.http.method, request.path)
        key = (api.logical_id, authorizer.name, identity)
        now = time.monotonic()
        with self._cache_lock:
            cached = self._cache.get(key)
        if cached is None or cached.expires <= now:
            fetched = self._call_authorizer(request, authorizer, arn, identity)
            if isinstance(fetched, HttpResponse):
                return fetched
            cached = fetched
            if authorizer.ttl_s > 0:
                with self._cache_lock:
                    self._cache[key] = cached
        decision = evaluate_policy(cached.policy, arn)
        if decision != "allow":
            message = "User is not authorized to access this resource"
            if decision == "deny":
                message += " with an explicit deny"
            return self._gateway_response(api, "ACCESS_DENIED", request, message=message)
        return {**cached.context, "principalId": cached.principal_id, "integrationLatency": 0}

    def _identity(self, request: _Request, authorizer: AuthorizerSpec) -> tuple[str, ...] | None:
        """The identity source values, or None when the caller must get a 401 unasked."""
        values: list[str] = []
        for name in authorizer.headers:
            value = request.http.header(name)
            if value is None or value == "":
                if authorizer.payload_type == "TOKEN" or authorizer.ttl_s > 0:
                    return None
                value = ""
            values.append(value)
        query = dict(request.query)
        for name in authorizer.query_strings:
            if (name not in query or query[name] == "") and authorizer.ttl_s > 0:
                return None
            values.append(query.get(name, ""))
        expression = authorizer.validation_expression
        if authorizer.payload_type == "TOKEN" and expression and not re.fullmatch(expression, values[0]):
            return None
        return tuple(values)

    def _call_authorizer(
        self, request: _Request, authorizer: AuthorizerSpec, arn: str, identity: tuple[str, ...]
    ) -> _CachedPolicy | HttpResponse:
        route = request.route
        assert route is not None
        event: dict[str, Any]
        if authorizer.payload_type == "TOKEN":
            event = {"type": "TOKEN", "authorizationToken": identity[0], "methodArn": arn}
        else:
            event = {"type": "REQUEST", "methodArn": arn, **self._event_common(request)}
            del event["body"], event["isBase64Encoded"]
        self.authorizer_calls += 1
        invocation = self.pools[authorizer.function_id].invoke(event, self.integration_timeout_s)
        api = route.api
        if isinstance(invocation.error, Exception) and str(invocation.error) == "Unauthorized":
            return self._gateway_response(api, "UNAUTHORIZED", request)
        if not invocation.ok:
            self._log_failure(authorizer.function_id, invocation)
            return self._gateway_response(api, "AUTHORIZER_FAILURE", request)
        result = invocation.result
        try:
            principal_id = result["principalId"]
            policy = result["policyDocument"]
            context = result.get("context") or {}
            if not isinstance(policy, dict) or not isinstance(context, dict):
                raise TypeError("policyDocument and context must be objects")
            # API Gateway passes context values on as strings, and refuses nested ones.
            flat = {str(k): _context_value(v) for k, v in context.items()}
        except (KeyError, TypeError, AttributeError) as exc:
            log.warning("authorizer %s returned an invalid result (%s): %r", authorizer.function_id, exc, result)
            return self._gateway_response(api, "AUTHORIZER_CONFIGURATION_ERROR", request)
        return _CachedPolicy(time.monotonic() + authorizer.ttl_s, str(principal_id), policy, flat)

    # -- integration -----------------------------------------------------------------

    def _integrate(self, request: _Request, authorizer_context: dict[str, Any] | None) -> HttpResponse:
        route = request.route
        assert route is not None
        pool = self.pools.get(route.function_id)
        if pool is None:
            return self._gateway_response(route.api, _LAMBDA_ERROR, request)
        event = self._event_common(request)
        if authorizer_context is not None:
            event["requestContext"]["authorizer"] = authorizer_context
        invocation = pool.invoke(event, self.integration_timeout_s)
        response: HttpResponse | None = None
        if invocation.throttled:
            response = self._gateway_response(route.api, "THROTTLED", request)
        elif invocation.timed_out and self.integration_timeout_s <= pool.spec.timeout_s:
            # API Gateway gave up first: its own 504. (A Lambda timeout within that
            # limit is a function error, below.)
            response = self._gateway_response(route.api, "INTEGRATION_TIMEOUT", request)
        elif not invocation.ok:
            self._log_failure(route.function_id, invocation)
        else:
            response = _proxy_response(invocation.result, request, route.api)
            if response is None:
                log.warning("%s returned a malformed proxy response: %.500r", route.function_id, invocation.result)
        if response is None:
            response = self._gateway_response(route.api, _LAMBDA_ERROR, request)
        response.function, response.cold = route.function_id, invocation.cold
        return response

    def _event_common(self, request: _Request) -> dict[str, Any]:
        """The parts the proxy event and a REQUEST authorizer's event share."""
        route = request.route
        assert route is not None
        http = request.http
        headers: dict[str, str] = {}
        multi_headers: dict[str, list[str]] = {}
        for name, value in [
            *http.headers,
            ("X-Forwarded-For", http.source_ip),
            ("X-Forwarded-Proto", "http"),
        ]:
            headers[name] = value
            multi_headers.setdefault(name, []).append(value)
        query: dict[str, str] = {}
        multi_query: dict[str, list[str]] = {}
        for name, value in request.query:
            query[name] = value
            multi_query.setdefault(name, []).append(value)
        body: str | None = None
        is_base64 = False
        if http.body:
            content_type = http.header("Content-Type") or ""
            if _media_type_matches(route.api.binary_media_types, content_type):
                body, is_base64 = base64.b64encode(http.body).decode(), True
            else:
                body = http.body.decode("utf-8", errors="replace")
        return {
            "resource": route.path,
            "path": request.path,
            "httpMethod": http.method,
            "headers": headers or None,
            "multiValueHeaders": multi_headers or None,
            "queryStringParameters": query or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": request.path_params or None,
            "stageVariables": None,
            "requestContext": {
                "accountId": ACCOUNT_ID,
                "apiId": API_ID,
                "domainName": http.host,
                "domainPrefix": http.host.split(".")[0],
                "extendedRequestId": request.request_id,
                "httpMethod": http.method,
                "identity": {
                    "sourceIp": http.source_ip,
                    "userAgent": http.header("User-Agent"),
                    "accessKey": None,
                    "accountId": None,
                    "caller": None,
                    "cognitoAuthenticationProvider": None,
                    "cognitoAuthenticationType": None,
                    "cognitoIdentityId": None,
                    "cognitoIdentityPoolId": None,
                    "principalOrgId": None,
                    "user": None,
                    "userArn": None,
                },
                "path": f"/{route.api.stage}{request.path}",
                "protocol": "HTTP/1.1",
                "requestId": request.request_id,
                "requestTime": formatdate(request.started, usegmt=True),
                "requestTimeEpoch": int(request.started * 1000),
                "resourceId": "local",
                "resourcePath": route.path,
                "stage": route.api.stage,
            },
            "body": body,
            "isBase64Encoded": is_base64,
        }

    # -- gateway responses -----------------------------------------------------------

    def _gateway_response(
        self, api: ApiSpec, response_type: str, request: _Request, message: str | None = None
    ) -> HttpResponse:
        status, default_message, error_type = _GATEWAY_DEFAULTS[response_type]
        message = default_message if message is None else message
        family = "DEFAULT_4XX" if 400 <= status < 500 else "DEFAULT_5XX"
        own = api.gateway_responses.get(response_type)
        fallback = api.gateway_responses.get(family)
        # DEFAULT_4XX / DEFAULT_5XX with a StatusCode re-status every response of the family.
        for spec in (own, fallback):
            if spec is not None and spec.status is not None:
                status = spec.status
                break
        template = _DEFAULT_TEMPLATE
        for spec in (own, fallback):
            if spec is not None and spec.templates:
                template = spec.templates.get("application/json") or next(iter(spec.templates.values()))
                break
        headers: dict[str, str] = {}
        for spec in (fallback, own):  # the type's own headers override the family's
            if spec is not None:
                for name, source in spec.headers.items():
                    value = _header_value(source, request.http)
                    if value is not None:
                        headers[name] = value
        body = _render(template, message, response_type, request, api)
        headers.setdefault("Content-Type", "application/json")
        headers["x-amzn-ErrorType"] = error_type
        headers["x-amzn-RequestId"] = request.request_id
        return HttpResponse(status, list(headers.items()), body.encode(), note=response_type)

    def _log_failure(self, function_id: str, invocation: Invocation) -> None:
        if invocation.timed_out:
            log.warning("%s timed out after %.0f ms", function_id, invocation.duration_ms)
        elif invocation.throttled:
            log.warning("%s throttled: every instance is busy", function_id)
        elif invocation.error is not None:
            log.error("%s raised", function_id, exc_info=invocation.error)

    def clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()


def _context_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise TypeError(f"context values must be strings, numbers or booleans, not {type(value).__name__}")


def _header_value(source: str, http: HttpRequest) -> str | None:
    if len(source) >= 2 and source[0] == source[-1] == "'":
        return source[1:-1]
    if source.startswith("method.request.header."):
        return http.header(source.removeprefix("method.request.header."))
    log.warning("gateway response header source %r is not supported locally", source)
    return None


def _render(template: str, message: str | None, response_type: str, request: _Request, api: ApiSpec) -> str:
    """The few ``$context`` variables gateway response templates use; VTL logic is not run."""
    values = {
        "error.messageString": json.dumps(message),
        "error.message": message or "",
        "error.responseType": response_type,
        "requestId": request.request_id,
        "extendedRequestId": request.request_id,
        "stage": api.stage,
        "path": request.path,
        "httpMethod": request.http.method,
        "resourcePath": request.route.path if request.route else "",
        "identity.sourceIp": request.http.source_ip,
    }

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return values.get(name, match.group(0))

    return re.sub(r"\$\{context\.([A-Za-z.]+)\}|\$context\.([A-Za-z]+(?:\.[A-Za-z]+)*)", replace, template)


def _media_type_matches(patterns: Sequence[str], content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    if not media:
        return False
    for pattern in patterns:
        # `~1` is how OpenAPI-style configuration escapes the `/` of a media type.
        pattern = pattern.replace("~1", "/").lower()
        if pattern == "*/*" or pattern == media:
            return True
        if pattern.endswith("/*") and media.startswith(pattern[:-1]):
            return True
    return False


def _proxy_response(result: Any, request: _Request, api: ApiSpec) -> HttpResponse | None:
    """The HTTP response a proxy-integration answer stands for; None if it is malformed."""
    if not isinstance(result, dict) or not set(result) <= _PROXY_RESPONSE_KEYS:
        return None
    status = result.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        return None
    headers: list[tuple[str, str]] = []
    single = result.get("headers") or {}
    multi = result.get("multiValueHeaders") or {}
    if not isinstance(single, dict) or not isinstance(multi, dict):
        return None
    try:
        for name, value in single.items():
            headers.append((str(name), _header_text(value)))
        for name, values in multi.items():
            if not isinstance(values, list):
                return None
            headers.extend((str(name), _header_text(v)) for v in values)
    except TypeError:
        return None
    body = result.get("body")
    if body is not None and not isinstance(body, str):
        return None
    is_base64 = result.get("isBase64Encoded", False)
    if not isinstance(is_base64, bool):
        return None
    payload = (body or "").encode()
    # API Gateway turns a base64 body into bytes only when the client accepts a binary
    # media type of the API; otherwise the client gets the base64 text.
    if is_base64 and _media_type_matches(api.binary_media_types, request.http.header("Accept") or ""):
        try:
            payload = base64.b64decode(body or "", validate=True)
        except (binascii.Error, ValueError):
            return None
    names = {name.lower() for name, _ in headers}
    if "content-type" not in names:
        headers.append(("Content-Type", "application/json"))  # API Gateway's default
    headers.append(("x-amzn-RequestId", request.request_id))
    return HttpResponse(status, headers, payload)


def _header_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise TypeError(f"header values must be scalars, not {type(value).__name__}")


# --- HTTP -------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default listen backlog of 5 would refuse connections in a burst of a few
    # hundred concurrent clients before any thread accepted them.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], gateway: ApiGateway, reuse_port: bool = False) -> None:
        self.gateway = gateway
        # Several processes serving one port (the kernel spreads the connections) play
        # Lambda's separate sandboxes: no GIL shared by all concurrent requests.
        self.allow_reuse_port = reuse_port
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 for keep-alive: the benchmarks' clients reuse connections.
    protocol_version = "HTTP/1.1"
    server_version = "evreserve-local-api"
    # Small JSON answers on a kept-alive socket would otherwise wait for Nagle's timer.
    disable_nagle_algorithm = True
    #: Seconds an idle kept-alive connection may hold its thread.
    timeout = 60
    server: _Server

    def _dispatch(self) -> None:
        started = time.monotonic()
        body = self._read_body()
        if body is None:
            return
        request = HttpRequest(
            method=self.command,
            target=self.path,
            headers=list(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
            host=self.headers.get("Host", f"{HOST}:{self.server.server_address[1]}"),
        )
        try:
            response = self.server.gateway.handle(request)
        except Exception:  # a bug here must cost one request, not the connection thread
            log.exception("local API failed on %s %s", self.command, self.path)
            response = HttpResponse(500, [("Content-Type", "application/json")], b'{"message":"Internal server error"}')
        # Logged before the answer goes out, so a client that has its answer can rely
        # on the line being there (tests read it); the socket write is not timed.
        duration_ms = (time.monotonic() - started) * 1000
        temperature = "-" if response.cold is None else "cold" if response.cold else "warm"
        log.info(
            "%s %s %d %.1fms %s %s%s",
            self.command,
            self.path,
            response.status,
            duration_ms,
            response.function or "-",
            temperature,
            f" {response.note}" if response.note else "",
        )
        self._write(response)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, QUERY...) goes through routing too, to API Gateway's
        # answer for a method no resource has, rather than http.server's own 501 page.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        try:
            length = int(length_header) if length_header else 0
        except ValueError:
            self.send_error(HTTPStatus.BAD_REQUEST, "bad Content-Length")
            return None
        if length > MAX_BODY_BYTES:
            # Read nothing more: answer and drop the connection rather than drain 10 MB+.
            self.close_connection = True
            self._write(HttpResponse(413, [("Content-Type", "application/json")], b'{"message":"Request Too Long"}'))
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _write(self, response: HttpResponse) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD" and response.body:
            self.wfile.write(response.body)

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        # The one-line-per-request log is _dispatch's; http.server's would repeat it on stderr.
        log.debug(format, *args)


# --- the whole thing ------------------------------------------------------------------


def build_gateway(
    definition: ApiDefinition,
    *,
    environment: Mapping[str, str] | None = None,
    max_instances: int = DEFAULT_MAX_INSTANCES,
    integration_timeout_s: float = INTEGRATION_TIMEOUT_S,
    region: str = "us-east-1",
) -> tuple[ApiGateway, FunctionEnvironment]:
    """The gateway over ``definition``'s routes, with a pool for each function they use.

    The returned environment is not applied yet: the caller brackets the gateway's life
    with its ``apply()`` / ``restore()``.
    """
    used = (
        {route.function_id for route in definition.routes}
        | {authorizer.function_id for api in definition.apis.values() for authorizer in api.authorizers.values()}
        | {source.function_id for source in definition.stream_sources}
        | {source.function_id for source in definition.schedules}
        | {source.function_id for source in definition.queue_sources}
    )
    specs = {fid: spec for fid, spec in definition.functions.items() if fid in used}
    function_environment = FunctionEnvironment(specs, environment)
    pools: dict[str, FunctionPool] = {}
    for fid, spec in specs.items():
        add_code_uri_to_path(spec.code_uri)
        pools[fid] = FunctionPool(spec, function_environment, region=region, max_instances=max_instances)
    gateway = ApiGateway(definition.routes, pools, region=region, integration_timeout_s=integration_timeout_s)
    return gateway, function_environment


#: What the local stack sets for every function, under ``environment``: webhooks may be
#: plain ``http://`` to this machine (``python -m devstack.webhook_echo``). Never deployed.
LOCAL_FUNCTION_ENV: Mapping[str, str] = {"WEBHOOK_ALLOW_LOCAL_HTTP": "true"}


class LocalApi:
    """The local API over a SAM template: ``with LocalApi(port=0) as api: api.url``.

    :meth:`start` reads the template, resolving its intrinsics against ``os.environ``
    as it is then (so start the local AWS stack first), puts the functions' variables
    into ``os.environ`` (restored by :meth:`stop`), and serves on ``host:port``;
    ``port=0`` picks a free one. ``environment`` adds or overrides variables for every
    function, like ``sam local start-api --env-vars``; ``parameters`` override the
    template's parameter defaults.
    """

    def __init__(
        self,
        template_path: Path | str | None = None,
        *,
        port: int | None = None,
        host: str = HOST,
        parameters: Mapping[str, str] | None = None,
        environment: Mapping[str, str] | None = None,
        max_instances: int = DEFAULT_MAX_INSTANCES,
        integration_timeout_s: float = INTEGRATION_TIMEOUT_S,
        region: str | None = None,
        reuse_port: bool = False,
    ) -> None:
        self.template_path = Path(template_path or TEMPLATE_PATH).resolve()
        self.reuse_port = reuse_port
        self.host = host
        self.port = int(os.environ.get("API_PORT", DEFAULT_PORT)) if port is None else port
        self.parameters = dict(parameters or {})
        self.environment = {**LOCAL_FUNCTION_ENV, **(environment or {})}
        self.max_instances = max_instances
        self.integration_timeout_s = integration_timeout_s
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.definition: ApiDefinition | None = None
        self._gateway: ApiGateway | None = None
        self._env: FunctionEnvironment | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._pollers: list[StreamPoller] = []
        self._schedulers: list[Scheduler] = []
        self._queue_pollers: list[QueuePoller] = []

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the local API is not running; start it first")
        return f"http://{self.host}:{self.port}"

    @property
    def gateway(self) -> ApiGateway:
        if self._gateway is None:
            raise RuntimeError("the local API is not running; start it first")
        return self._gateway

    def start(self) -> Self:
        if self._server is not None:
            return self
        definition = read_template(
            load_template(self.template_path),
            self.template_path.parent,
            os.environ,
            parameters=self.parameters,
            region=self.region,
        )
        for warning in definition.warnings:
            log.warning("%s", warning)
        gateway, environment = build_gateway(
            definition,
            environment=self.environment,
            max_instances=self.max_instances,
            integration_timeout_s=self.integration_timeout_s,
            region=self.region,
        )
        environment.apply()
        try:
            server = _Server((self.host, self.port), gateway, self.reuse_port)
        except BaseException:
            environment.restore()
            raise
        self.port = server.server_address[1]
        self.definition, self._gateway, self._env, self._server = definition, gateway, environment, server
        self._thread = threading.Thread(target=server.serve_forever, name="local-api", daemon=True)
        self._thread.start()
        self._pollers = [self._poller(source) for source in definition.stream_sources]
        self._schedulers = [
            Scheduler(source, self._invoker(source.function_id)).start() for source in definition.schedules
        ]
        self._queue_pollers = [
            QueuePoller(source, os.environ[QUEUE_ENV[source.queue_id]], self._invoker(source.function_id)).start()
            for source in definition.queue_sources
        ]
        log.info("local API on %s: %d routes, %d functions", self.url, len(definition.routes), len(gateway.pools))
        return self

    def _invoker(self, function_id: str) -> Callable[[dict[str, Any]], Any]:
        """Invoke a function as its event sources do (no HTTP): the result, or raise."""
        pool = self.gateway.pools[function_id]
        timeout_s = self.definition.functions[function_id].timeout_s if self.definition else None

        def invoke(event: dict[str, Any]) -> Any:
            invocation = pool.invoke(event, timeout_s)
            if not invocation.ok:
                raise RuntimeError(f"{function_id}: {invocation.error or 'timed out or throttled'}")
            return invocation.result

        return invoke

    def _poller(self, source: StreamSource) -> StreamPoller:
        failure_env = DESTINATION_QUEUE_ENV.get(source.failure_queue_id or "")
        return StreamPoller(
            source,
            os.environ[TABLE_ENV[source.table_id]],
            self._invoker(source.function_id),
            failure_queue_url=os.environ.get(failure_env) if failure_env else None,
        ).start()

    @property
    def stream_pollers(self) -> list[StreamPoller]:
        return list(self._pollers)

    def stop(self) -> None:
        pollers, self._pollers = self._pollers, []
        for poller in pollers:
            poller.stop()
        schedulers, self._schedulers = self._schedulers, []
        for scheduler in schedulers:
            scheduler.stop()
        queue_pollers, self._queue_pollers = self._queue_pollers, []
        for queue_poller in queue_pollers:
            queue_poller.stop()
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._gateway is not None:
            for pool in self._gateway.pools.values():
                pool.close()
        if self._env is not None:
            self._env.restore()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def routes(self) -> list[str]:
        """``METHOD /path -> Function`` for each route, for the start-up banner."""
        if self.definition is None:
            return []
        return [f"{r.method} {r.path} -> {r.function_id}" for r in self.definition.routes]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.local_api",
        description="Serve template.yaml's API on 127.0.0.1 (AWS endpoints and table names from the environment).",
    )
    parser.add_argument("--template", type=Path, default=TEMPLATE_PATH)
    parser.add_argument("--port", type=int, default=None, help="default: $API_PORT or 3000")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a template parameter's default (repeatable)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="add or override a variable for every function, like sam's --env-vars (repeatable)",
    )
    parser.add_argument(
        "--reuse-port",
        action="store_true",
        help="share the port with other processes started so (SO_REUSEPORT): the kernel spreads connections",
    )
    args = parser.parse_args(argv)
    try:
        parameters = dict(_assignment(text) for text in args.parameter)
        environment = dict(_assignment(text) for text in args.env)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with LocalApi(
        args.template, port=args.port, parameters=parameters, environment=environment, reuse_port=args.reuse_port
    ) as api:
        for line in api.routes():
            log.info("  %s", line)
        print(f"local API listening on {api.url}", flush=True)
        stop.wait()
    return 0


def _assignment(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise ValueError(f"expected NAME=VALUE, got {text!r}")
    return name, value


if __name__ == "__main__":
    raise SystemExit(main())
