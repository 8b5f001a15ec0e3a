"""The local API's gateway logic over the sample template, without sockets.

The sample template (tests/fixtures/local_api_sample/) has one REST API with a REQUEST
authorizer and gateway responses, and dummy functions that echo the event they got.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.local_api import (
    ApiDefinition,
    ApiGateway,
    ApiSpec,
    GatewayResponseSpec,
    HttpRequest,
    Route,
    Router,
    build_gateway,
    evaluate_policy,
    read_template,
)
from devstack.template import load_template

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "local_api_sample"
ENVIRON = {"REGISTRY_TABLE": "sample-registry", "COMMAND_DLQ_URL": "http://127.0.0.1:1/queue/dlq"}
ALLOW = {"Authorization": "allow alice"}


def definition(name: str = "template.yaml", **kwargs: Any) -> ApiDefinition:
    return read_template(load_template(SAMPLE / name), SAMPLE, kwargs.pop("environ", ENVIRON), **kwargs)


@dataclasses.dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    def __init__(self, gateway: ApiGateway) -> None:
        self.gateway = gateway

    def __call__(self, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b"") -> Answer:
        response = self.gateway.handle(HttpRequest(method, target, list((headers or {}).items()), body))
        return Answer(response.status, dict(response.headers), response.body)


@pytest.fixture
def make_client() -> Iterator[Any]:
    """Builds a gateway over a sample template; its environment is applied until teardown."""
    built: list[tuple[ApiGateway, Any]] = []

    def make(name: str = "template.yaml", **kwargs: Any) -> Client:
        gateway, environment = build_gateway(definition(name), **kwargs)
        environment.apply()
        built.append((gateway, environment))
        return Client(gateway)

    yield make
    for gateway, environment in reversed(built):
        environment.restore()
        for pool in gateway.pools.values():
            pool.close()


@pytest.fixture
def call(make_client: Any) -> Client:
    client: Client = make_client()
    return client


# --- reading the template ---------------------------------------------------------------


def test_environment_intrinsics_resolve_from_process_environment_and_parameters() -> None:
    """!Ref of a table or queue is the env var the core maps it to; !Ref Stage its default; !Sub of both."""
    env = definition().functions["EchoFunction"].environment
    assert env["TABLE"] == "sample-registry"
    assert env["QUEUE"] == "http://127.0.0.1:1/queue/dlq"
    assert env["STAGE_NAME"] == "test"
    assert env["GREETING"] == "hello-test-us-east-1"


def test_intrinsic_variable_already_in_the_environment_keeps_its_value() -> None:
    """The local stack's own value of a variable beats the template's intrinsic for it."""
    env = definition(environ={**ENVIRON, "GREETING": "from-the-stack", "FLAVOUR": "ignored"}).functions
    assert env["EchoFunction"].environment["GREETING"] == "from-the-stack"
    assert env["EchoFunction"].environment["FLAVOUR"] == "echo"  # a literal is the template's


def test_function_variables_override_globals() -> None:
    """A function's own Environment is merged over Globals.Function.Environment."""
    functions = definition().functions
    assert functions["EchoFunction"].environment["FLAVOUR"] == "echo"
    assert functions["EchoFunction"].environment["ONLY_ECHO"] == "yes"
    assert functions["AuthorizerFunction"].environment["FLAVOUR"] == "shared"


def test_unresolvable_intrinsic_is_left_out_with_a_warning() -> None:
    """!GetAtt has no local value: the variable is absent and the reason is reported."""
    read = definition()
    assert "UNRESOLVABLE" not in read.functions["EchoFunction"].environment
    assert any("UNRESOLVABLE" in w and "GetAtt" in w for w in read.warnings)


def test_ref_to_a_table_whose_variable_is_unset_is_left_out() -> None:
    """Without the local stack's REGISTRY_TABLE, !Ref RegistryTable cannot be guessed."""
    read = definition(environ={})
    assert "TABLE" not in read.functions["EchoFunction"].environment
    assert any("REGISTRY_TABLE is not set" in w for w in read.warnings)


def test_parameter_override_changes_stage_and_variables() -> None:
    """parameters= plays `--parameter-overrides`: the stage and what refers to it follow."""
    read = definition(parameters={"Stage": "qa"})
    assert read.apis["SampleApi"].stage == "qa"
    assert read.functions["EchoFunction"].environment["STAGE_NAME"] == "qa"


def test_function_settings_come_from_the_template() -> None:
    """Timeout, MemorySize, CodeUri and Handler per function, Globals as the default."""
    functions = definition().functions
    assert functions["FaultyFunction"].timeout_s == 1
    assert functions["EchoFunction"].timeout_s == 10
    assert functions["EchoFunction"].memory_mb == 256
    assert functions["EchoFunction"].module_file == SAMPLE / "functions" / "echo" / "echo.py"


def test_routes_carry_their_authorizer() -> None:
    """The API's DefaultAuthorizer applies unless the event says Authorizer: NONE."""
    routes = {(r.method, r.path): r for r in definition().routes}
    assert routes[("GET", "/items/{itemId}")].authorizer == "SampleAuthorizer"
    assert routes[("ANY", "/files/{proxy+}")].authorizer == "SampleAuthorizer"
    assert routes[("GET", "/open")].authorizer is None


def test_request_authorizer_is_read_with_identity_and_ttl() -> None:
    """FunctionArn !GetAtt X.Arn names the function; Identity gives the headers and TTL."""
    authorizer = definition().apis["SampleApi"].authorizers["SampleAuthorizer"]
    assert authorizer.function_id == "AuthorizerFunction"
    assert authorizer.payload_type == "REQUEST"
    assert authorizer.headers == ("Authorization",)
    assert authorizer.ttl_s == 300


def test_implicit_api_has_stage_prod_and_no_authorizer() -> None:
    """Events without RestApiId belong to SAM's ServerlessRestApi."""
    (route,) = definition("plain.yaml").routes
    assert route.api.logical_id == "ServerlessRestApi"
    assert route.api.stage == "Prod"
    assert route.authorizer is None


# --- routing ----------------------------------------------------------------------------


def test_literal_segment_beats_path_parameter(call: Client) -> None:
    """/items/special is its own resource, though /items/{itemId} matches it too."""
    event = call("GET", "/items/special", ALLOW).json()["event"]
    assert event["resource"] == "/items/special"
    assert event["pathParameters"] is None


def test_path_parameter_is_decoded(call: Client) -> None:
    """{itemId} takes one segment, percent-decoded, and the template path is the resource."""
    event = call("GET", "/items/a%20b", ALLOW).json()["event"]
    assert event["resource"] == "/items/{itemId}"
    assert event["pathParameters"] == {"itemId": "a b"}
    assert event["path"] == "/items/a b"


def test_greedy_parameter_takes_the_rest_of_the_path(call: Client) -> None:
    """{proxy+} spans several segments; ANY accepts every method."""
    event = call("DELETE", "/files/a/b/c.txt", ALLOW).json()["event"]
    assert event["pathParameters"] == {"proxy": "a/b/c.txt"}
    assert event["httpMethod"] == "DELETE"


def test_greedy_parameter_needs_one_segment() -> None:
    """/files alone does not match /files/{proxy+}."""
    assert Router(definition().routes).match("GET", "/files") is None


def test_exact_method_beats_any() -> None:
    """On the same path, GET /x wins over ANY /x for a GET."""
    api = ApiSpec("Api", "test")
    router = Router([Route(api, "/x", "ANY", "AnyFn", None), Route(api, "/x", "GET", "GetFn", None)])
    assert router.match("GET", "/x")[0].function_id == "GetFn"  # type: ignore[index]
    assert router.match("POST", "/x")[0].function_id == "AnyFn"  # type: ignore[index]


def test_unknown_route_uses_the_templates_missing_token_response(call: Client) -> None:
    """The sample declares MISSING_AUTHENTICATION_TOKEN as 404 with its own body."""
    answer = call("GET", "/nowhere", ALLOW)
    assert answer.status == 404
    assert answer.json() == {"error": "not_found", "requestId": answer.headers["x-amzn-RequestId"]}


def test_unknown_method_is_a_missing_route(call: Client) -> None:
    """DELETE /items has no method: the same gateway response as an unknown path."""
    assert call("DELETE", "/items", ALLOW).status == 404


def test_unknown_route_without_gateway_responses_is_api_gateways_403(make_client: Any) -> None:
    """API Gateway's own default for an unknown route is 403 Missing Authentication Token."""
    answer = make_client("plain.yaml")("GET", "/nowhere")
    assert answer.status == 403
    assert answer.json() == {"message": "Missing Authentication Token"}
    assert answer.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


# --- the proxy event --------------------------------------------------------------------


def test_query_string_single_and_multi_values(call: Client) -> None:
    """The last value of a repeated parameter in the single map, all in the multi map."""
    event = call("GET", "/items?a=1&a=2&empty=&sp=x%20y", ALLOW).json()["event"]
    assert event["queryStringParameters"] == {"a": "2", "empty": "", "sp": "x y"}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "empty": [""], "sp": ["x y"]}


def test_no_query_string_is_null(call: Client) -> None:
    """As in API Gateway, absent maps are null, not empty objects."""
    event = call("GET", "/items", ALLOW).json()["event"]
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None
    assert event["body"] is None
    assert event["stageVariables"] is None


def test_headers_single_and_multi_values(call: Client) -> None:
    """Headers keep their case; a repeated one has its last value in ``headers``."""
    gateway = call.gateway
    request = HttpRequest("GET", "/items", [("Authorization", "allow a"), ("X-Tag", "1"), ("X-Tag", "2")])
    event = json.loads(gateway.handle(request).body)["event"]
    assert event["headers"]["X-Tag"] == "2"
    assert event["multiValueHeaders"]["X-Tag"] == ["1", "2"]
    assert event["headers"]["Authorization"] == "allow a"


def test_text_body_is_passed_as_a_string(call: Client) -> None:
    """A JSON body arrives as the string sent, not base64-encoded."""
    body = json.dumps({"portId": 7, "name": "é"}).encode()
    event = call("POST", "/items", {**ALLOW, "Content-Type": "application/json"}, body).json()["event"]
    assert event["body"] == body.decode()
    assert event["isBase64Encoded"] is False


def test_request_context(call: Client) -> None:
    """requestId, stage, resourcePath, httpMethod and sourceIp as API Gateway fills them."""
    answer = call("GET", "/items/7", ALLOW)
    context = answer.json()["event"]["requestContext"]
    assert context["requestId"] == answer.headers["x-amzn-RequestId"]
    assert context["stage"] == "test"
    assert context["resourcePath"] == "/items/{itemId}"
    assert context["httpMethod"] == "GET"
    assert context["path"] == "/test/items/7"
    assert context["identity"]["sourceIp"] == "127.0.0.1"


def test_authorizer_context_reaches_the_function_as_strings(call: Client) -> None:
    """The principal's context, stringified, plus principalId, is requestContext.authorizer."""
    authorizer = call("GET", "/items/7", ALLOW).json()["event"]["requestContext"]["authorizer"]
    assert authorizer["principalId"] == "alice"
    assert authorizer["accountId"] == "alice"
    assert authorizer["admin"] == "false"
    assert authorizer["level"] == "3"


def test_open_route_has_no_authorizer_context(call: Client) -> None:
    """Authorizer: NONE: no authorizer call, no context, no Authorization needed."""
    answer = call("GET", "/open")
    assert answer.status == 200
    assert answer.json()["authorizer"] is None
    assert call.gateway.authorizer_calls == 0


# --- the authorizer -------------------------------------------------------------------


def test_missing_identity_source_is_401_without_calling_the_authorizer(call: Client) -> None:
    """No Authorization header: the template's UNAUTHORIZED response, authorizer untouched."""
    answer = call("GET", "/items")
    assert answer.status == 401
    assert answer.json() == {"error": "unauthorized", "message": "Unauthorized"}
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert call.gateway.authorizer_calls == 0


def test_authorizer_raising_unauthorized_is_401(call: Client) -> None:
    """Exception("Unauthorized") from the authorizer is API Gateway's 401."""
    answer = call("GET", "/items", {"Authorization": "unauthorized"})
    assert answer.status == 401
    assert answer.json()["error"] == "unauthorized"


def test_deny_policy_is_403(call: Client) -> None:
    """An explicit Deny: ACCESS_DENIED, with API Gateway's default body (none declared)."""
    answer = call("GET", "/items", {"Authorization": "deny mallory"})
    assert answer.status == 403
    assert answer.json() == {"message": "User is not authorized to access this resource with an explicit deny"}


def test_failing_authorizer_is_500(call: Client) -> None:
    """Any other authorizer error is AUTHORIZER_FAILURE: 500 with a null message."""
    answer = call("GET", "/items", {"Authorization": "boom"})
    assert answer.status == 500
    assert answer.json() == {"message": None}


@pytest.mark.parametrize("token", ["invalid x", "nested x"])
def test_malformed_authorizer_result_is_500(call: Client, token: str) -> None:
    """No policy, or a nested context value: AUTHORIZER_CONFIGURATION_ERROR."""
    answer = call("GET", "/items", {"Authorization": token})
    assert answer.status == 500
    assert answer.headers["x-amzn-ErrorType"] == "AuthorizerConfigurationException"


def test_authorizer_result_is_cached_by_identity_source(call: Client) -> None:
    """Same Authorization header within the TTL: one authorizer call; another header: a new one."""
    for _ in range(3):
        assert call("GET", "/items", ALLOW).status == 200
    assert call.gateway.authorizer_calls == 1
    assert call("GET", "/items", {"Authorization": "allow bob"}).status == 200
    assert call.gateway.authorizer_calls == 2


def test_cached_policy_is_evaluated_against_each_method_arn(call: Client) -> None:
    """As deployed: a cached policy naming one method ARN denies the next route."""
    narrow = {"Authorization": "narrow carol"}
    assert call("GET", "/items/1", narrow).status == 200
    assert call("GET", "/items/2", narrow).status == 403
    assert call.gateway.authorizer_calls == 1


def test_ttl_zero_calls_the_authorizer_every_time(make_client: Any) -> None:
    """ReauthorizeEvery: 0 turns the cache off."""
    client: Client = make_client()
    for route in client.gateway.router.routes:
        authorizers = {n: dataclasses.replace(a, ttl_s=0) for n, a in route.api.authorizers.items()}
        object.__setattr__(route.api, "authorizers", authorizers)
    client("GET", "/items", ALLOW)
    client("GET", "/items", ALLOW)
    assert client.gateway.authorizer_calls == 2


def test_authorizer_gets_a_request_event_with_the_method_arn() -> None:
    """The REQUEST event names the method ARN of stage, method and path."""
    seen: list[dict[str, Any]] = []

    class Recorder:
        spec = definition().functions["AuthorizerFunction"]

        def invoke(self, event: Any, timeout_s: float | None = None) -> Any:
            from devstack.lambda_runtime import Invocation

            seen.append(event)
            return Invocation(result={"principalId": "x", "policyDocument": {"Statement": []}})

    gateway = ApiGateway(definition().routes, {"AuthorizerFunction": Recorder()})  # type: ignore[dict-item]
    gateway.handle(HttpRequest("GET", "/items/9?q=1", [("Authorization", "t")]))
    (event,) = seen
    assert event["type"] == "REQUEST"
    assert event["methodArn"] == "arn:aws:execute-api:us-east-1:123456789012:local/test/GET/items/9"
    assert event["resource"] == "/items/{itemId}"
    assert event["path"] == "/items/9"
    assert event["headers"]["Authorization"] == "t"
    assert event["queryStringParameters"] == {"q": "1"}


def test_default_4xx_shapes_undeclared_4xx_responses(make_client: Any) -> None:
    """DEFAULT_4XX's template and status apply to a 4xx type the template does not declare."""
    client: Client = make_client()
    api = client.gateway.router.routes[0].api
    responses = dict(api.gateway_responses)
    responses["DEFAULT_4XX"] = GatewayResponseSpec(status=418, templates={"application/json": '{"error": "x"}'})
    object.__setattr__(api, "gateway_responses", responses)
    answer = client("GET", "/items", {"Authorization": "deny x"})
    assert (answer.status, answer.json()) == (418, {"error": "x"})


# --- policies ---------------------------------------------------------------------------

ARN = "arn:aws:execute-api:us-east-1:123456789012:local/test/GET/items/1"


@pytest.mark.parametrize(
    ("statements", "expected"),
    [
        ([{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": ARN}], "allow"),
        ([{"Effect": "Allow", "Action": "execute-api:*", "Resource": "arn:aws:execute-api:*:*:local/*/*"}], "allow"),
        ([{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": [ARN.replace("GET", "POST")]}], "none"),
        (
            [
                {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "*"},
                {"Effect": "Deny", "Action": "execute-api:Invoke", "Resource": ARN},
            ],
            "deny",
        ),
        ([], "none"),
    ],
)
def test_policy_evaluation(statements: list[dict[str, Any]], expected: str) -> None:
    """IAM wildcards match; an explicit Deny wins over any Allow; nothing matching is no access."""
    assert evaluate_policy({"Statement": statements}, ARN) == expected


# --- the function's answer --------------------------------------------------------------


def test_proxy_response_status_headers_and_body(call: Client) -> None:
    """statusCode, headers and multiValueHeaders and the body come back as returned."""
    response = call.gateway.handle(HttpRequest("GET", "/items?status=201", [("Authorization", "allow a")]))
    assert response.status == 201
    assert ("X-Echo", "yes") in response.headers
    assert [v for k, v in response.headers if k == "X-Multi"] == ["a", "b"]
    assert json.loads(response.body)["function_name"] == "EchoFunction"


def test_handler_exception_is_502(call: Client) -> None:
    """An unhandled error is Lambda's Unhandled: API Gateway's 502 Internal server error."""
    answer = call("GET", "/faulty/raise", ALLOW)
    assert answer.status == 502
    assert answer.json() == {"message": "Internal server error"}


@pytest.mark.parametrize("mode", ["dict-body", "extra-key", "no-status", "not-json"])
def test_malformed_proxy_response_is_502(call: Client, mode: str) -> None:
    """A non-string body, an unknown key, no statusCode, or a non-JSON result: 502."""
    assert call("GET", f"/faulty/{mode}", ALLOW).status == 502


def test_base64_body_without_binary_media_types_stays_text(call: Client) -> None:
    """With no BinaryMediaTypes, API Gateway hands the base64 text to the client as is."""
    assert call("GET", "/faulty/base64", ALLOW).body == b"aGk="


def test_response_without_body_or_content_type(call: Client) -> None:
    """No body is an empty one, and Content-Type defaults to application/json."""
    answer = call("GET", "/faulty/none", ALLOW)
    assert (answer.status, answer.body) == (204, b"")
    assert answer.headers["Content-Type"] == "application/json"


# --- timeouts and instances -------------------------------------------------------------


def test_lambda_timeout_is_502_and_the_instance_is_discarded(call: Client) -> None:
    """Timeout 1 s < API Gateway's 29 s: a function error (502); the next call starts cold."""
    pool = call.gateway.pools["FaultyFunction"]
    assert call("GET", "/faulty/none", ALLOW).status == 204
    answer = call("GET", "/faulty/sleep?s=3", ALLOW)
    assert answer.status == 502
    assert pool.instances == 0
    response = call.gateway.handle(HttpRequest("GET", "/faulty/none", [("Authorization", "allow a")]))
    assert response.cold is True


def test_integration_timeout_is_504(make_client: Any) -> None:
    """API Gateway giving up before the function's Timeout: 504 Endpoint request timed out."""
    client: Client = make_client(integration_timeout_s=0.3)
    answer = client("GET", "/items?sleep=2", ALLOW)
    assert answer.status == 504
    assert answer.json() == {"message": "Endpoint request timed out"}


def test_context_reports_function_and_remaining_time(call: Client) -> None:
    """The LambdaContext names the function and counts down from its Timeout."""
    body = call("GET", "/items", ALLOW).json()
    assert body["function_name"] == "EchoFunction"
    assert 9_000 < body["remaining_ms"] <= 10_000


def test_sequential_requests_reuse_a_warm_instance(call: Client) -> None:
    """One request at a time: one module copy, cold once, then warm."""
    gateway = call.gateway
    first = gateway.handle(HttpRequest("GET", "/items", [("Authorization", "allow a")]))
    second = gateway.handle(HttpRequest("GET", "/items", [("Authorization", "allow a")]))
    assert (first.cold, second.cold) == (True, False)
    assert json.loads(first.body)["module"] == json.loads(second.body)["module"]
    assert gateway.pools["EchoFunction"].cold_starts == 1


def test_concurrent_requests_each_get_their_own_instance(call: Client) -> None:
    """Overlapping requests never share a module copy: N at once, N instances."""
    count = 20
    call("GET", "/items", ALLOW)  # the authorizer's answer is cached before the burst
    results: list[Answer] = []
    barrier = threading.Barrier(count)

    def one() -> None:
        barrier.wait()
        results.append(call("GET", "/items?sleep=0.5", ALLOW))

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status for a in results] == [200] * count
    assert len({a.json()["module"] for a in results}) == count
    assert call.gateway.pools["EchoFunction"].peak_instances == count


def test_pool_at_its_cap_throttles(make_client: Any) -> None:
    """Past max_instances concurrent requests, Lambda throttles: 429."""
    client: Client = make_client(max_instances=1)
    client("GET", "/items", ALLOW)
    statuses: list[int] = []
    threads = [
        threading.Thread(target=lambda: statuses.append(client("GET", "/items?sleep=0.3", ALLOW).status))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 429]


# --- the environment --------------------------------------------------------------------


def test_functions_see_their_own_value_of_a_conflicting_variable(call: Client) -> None:
    """FLAVOUR differs per function: each cold start sees its own function's value."""
    assert call("GET", "/items", ALLOW).json()["env"]["FLAVOUR"] == "echo"
    assert call("GET", "/open").json()["flavour"] == "other"
    authorizer = call("GET", "/items", {"Authorization": "allow zed"}).json()["event"]["requestContext"]["authorizer"]
    assert authorizer["flavour"] == "shared"


def test_shared_variables_are_in_the_environment_at_import(call: Client) -> None:
    """What every function declares alike is in os.environ before any module is imported."""
    env = call("GET", "/items", ALLOW).json()["env"]
    assert env["TABLE"] == "sample-registry"
    assert env["STAGE_NAME"] == "test"
    assert env["UNRESOLVABLE"] is None
    assert os.environ["AWS_SAM_LOCAL"] == "true"


def test_environment_is_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """restore() puts back what apply() changed, removing what it added."""
    monkeypatch.setenv("TABLE", "before")
    monkeypatch.delenv("ONLY_ECHO", raising=False)
    _gateway, environment = build_gateway(definition())
    environment.apply()
    assert os.environ["TABLE"] == "sample-registry"
    environment.restore()
    assert os.environ["TABLE"] == "before"
    assert "ONLY_ECHO" not in os.environ
