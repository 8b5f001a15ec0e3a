"""Lambda's Invoke API on the local API's port: what ``sam local start-lambda`` offers, without Docker.

``POST /2015-03-31/functions/{FunctionName}/invocations`` with an event as the body runs
that function of the template in the local stack's own runtime (the pools that serve
the API, with the same environment, tables and queues) and answers as Lambda does: the
handler's result as JSON; ``X-Amz-Function-Error: Unhandled`` with ``errorMessage`` /
``errorType`` when it raised or timed out; 404 ``ResourceNotFoundException`` for a name
the template does not have; 429 ``TooManyRequestsException`` when its instances are all
busy. So ``aws lambda invoke --endpoint-url http://127.0.0.1:3000``, boto3's Lambda
client and ``make invoke`` (``python -m devstack.invoke``) all work against ``make run``.

The function name is the template's logical id (``ReservationsFunction``), alone, with a
qualifier, or in an ARN. No authorizer runs: an invocation is what API Gateway does after
it, so an API event carries its ``requestContext.authorizer`` itself, as the ``events/``
samples do. That makes this endpoint a way around the API's keys, so it answers only what
a Lambda client sends: a SigV4 ``Authorization`` header (boto3 and the AWS CLI always
sign; a web page cannot add that header without a preflight, which this server refuses)
and no ``Origin`` (a browser's). The local API binds to 127.0.0.1 only; nothing here is
deployed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    from devstack.lambda_runtime import FunctionPool
    from devstack.local_api import HttpRequest, HttpResponse

INVOKE_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")
_JSON = ("Content-Type", "application/json")


def _answer(status: int, body: Any, *headers: tuple[str, str]) -> HttpResponse:
    from devstack.local_api import HttpResponse

    return HttpResponse(int(status), [_JSON, *headers], json.dumps(body).encode())


def _error(status: HTTPStatus, kind: str, message: str) -> HttpResponse:
    return _answer(status, {"Type": "User", "message": message}, ("x-amzn-ErrorType", kind))


def function_name(given: str) -> str:
    """``Name``, ``Name:qualifier`` or ``arn:aws:lambda:region:account:function:Name[:qualifier]`` -> ``Name``."""
    parts = given.split(":")
    return parts[6] if parts[0] == "arn" and len(parts) >= 7 else parts[0]


def invoke(pools: Mapping[str, FunctionPool], http: HttpRequest, path: str) -> HttpResponse | None:
    """The Invoke API's answer to ``http``, or ``None`` when it is not an invocation."""
    matched = INVOKE_PATH.match(path)
    if matched is None:
        return None
    if http.method != "POST":
        return _error(HTTPStatus.METHOD_NOT_ALLOWED, "InvalidRequestContentException", "Invoke is a POST")
    headers = {name.lower(): value for name, value in http.headers}
    if "origin" in headers or not headers.get("authorization", "").startswith("AWS4-HMAC-SHA256 "):
        return _error(
            HTTPStatus.FORBIDDEN, "AccessDeniedException", "sign the request (boto3, the AWS CLI); browsers may not"
        )
    name = function_name(unquote(matched.group(1)))
    pool = pools.get(name)
    if pool is None:
        known = ", ".join(sorted(pools))
        return _error(HTTPStatus.NOT_FOUND, "ResourceNotFoundException", f"Function not found: {name} (here: {known})")
    try:
        event = json.loads(http.body or b"{}")
    except ValueError:
        return _error(HTTPStatus.BAD_REQUEST, "InvalidRequestContentException", "Could not parse request body as JSON")
    timeout_s = pool.spec.timeout_s
    invocation = pool.invoke(event, timeout_s)
    if invocation.throttled:
        return _error(HTTPStatus.TOO_MANY_REQUESTS, "TooManyRequestsException", "Rate Exceeded.")
    executed = ("X-Amz-Executed-Version", "$LATEST")
    if invocation.timed_out:
        message = f"Task timed out after {timeout_s:.2f} seconds"
        unhandled = {"errorMessage": message, "errorType": "Sandbox.Timedout"}
        return _answer(HTTPStatus.OK, unhandled, executed, ("X-Amz-Function-Error", "Unhandled"))
    if invocation.error is not None:
        error = invocation.error
        unhandled = {"errorMessage": str(error), "errorType": type(error).__name__}
        return _answer(HTTPStatus.OK, unhandled, executed, ("X-Amz-Function-Error", "Unhandled"))
    response = _answer(HTTPStatus.OK, invocation.result, executed)
    response.function, response.cold = name, invocation.cold
    return response
