"""The local Lambda Invoke endpoint (devstack/lambda_invoke.py): what it runs, and whom it refuses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from devstack.lambda_invoke import function_name, invoke
from devstack.lambda_runtime import Invocation
from devstack.local_api import HttpRequest

SIGNED = ("Authorization", "AWS4-HMAC-SHA256 Credential=local/20261207/us-east-1/lambda/aws4_request, ...")
PATH = "/2015-03-31/functions/{}/invocations"


@dataclass
class FakePool:
    outcome: Invocation
    spec: Any = field(default_factory=lambda: SimpleNamespace(timeout_s=29.0))
    events: list[Any] = field(default_factory=list)

    def invoke(self, event: Any, timeout_s: float | None = None) -> Invocation:
        self.events.append(event)
        return self.outcome


def post(pools: dict[str, Any], name: str, *headers: tuple[str, str], body: bytes = b'{"a": 1}') -> Any:
    http = HttpRequest(method="POST", target=PATH.format(name), headers=list(headers), body=body)
    return invoke(pools, http, PATH.format(name))


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("ReservationsFunction", "ReservationsFunction"),
        ("ReservationsFunction:live", "ReservationsFunction"),
        ("arn:aws:lambda:us-east-1:123456789012:function:ReservationsFunction:7", "ReservationsFunction"),
    ],
)
def test_a_name_a_qualifier_or_an_arn_names_the_function(given: str, name: str):
    assert function_name(given) == name


def test_a_signed_invocation_runs_the_function_and_answers_its_result():
    pool = FakePool(Invocation(result={"statusCode": 200}))
    answer = post({"F": pool}, "F:live", SIGNED)
    assert answer.status == 200 and json.loads(answer.body) == {"statusCode": 200}
    assert pool.events == [{"a": 1}]


@pytest.mark.parametrize(
    "headers",
    [(), (SIGNED, ("Origin", "https://evil.example.com")), (("Authorization", "Bearer evr_x"),)],
    ids=["unsigned", "from a web page", "an API key instead of a signature"],
)
def test_what_a_browser_could_send_is_refused_before_anything_runs(headers: tuple[tuple[str, str], ...]):
    """The endpoint skips the API's authorizer: a page the developer visits must not reach it."""
    pool = FakePool(Invocation(result={}))
    answer = post({"F": pool}, "F", *headers)
    assert answer.status == 403 and pool.events == []


def test_errors_answer_as_lambda_does():
    failing = FakePool(Invocation(error=ValueError("boom")))
    answer = post({"F": failing}, "F", SIGNED)
    assert answer.status == 200 and ("X-Amz-Function-Error", "Unhandled") in answer.headers
    assert json.loads(answer.body) == {"errorMessage": "boom", "errorType": "ValueError"}
    slow = post({"F": FakePool(Invocation(timed_out=True))}, "F", SIGNED)
    assert json.loads(slow.body)["errorMessage"] == "Task timed out after 29.00 seconds"
    assert post({"F": FakePool(Invocation(throttled=True))}, "F", SIGNED).status == 429
    missing = post({"F": failing}, "Nope", SIGNED)
    assert missing.status == 404 and ("x-amzn-ErrorType", "ResourceNotFoundException") in missing.headers
    assert post({"F": failing}, "F", SIGNED, body=b"{not json").status == 400
