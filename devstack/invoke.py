"""``make invoke FUNCTION=... EVENT=events/...``: run one function with a sample event against ``make run``.

The event goes to the running local stack's Lambda Invoke endpoint
(:mod:`devstack.lambda_invoke`, on the local API's port), so the function runs in the
stack's own runtime, against its tables and queues, with no Docker. ``FUNCTION`` is the
template's logical id (``ReservationsFunction``) or the function's directory
(``reservations``). An API event's answer is shown as the HTTP answer it stands for.

``make run`` also writes ``.local/env.json`` (:func:`write_env_json`): the same
environment for ``sam local invoke`` / ``sam local start-api`` where Docker runs, so the
container's functions use the local stack's tables and queues (docs/deploy.md, "SAM
local invocations").

Exit status: 0 answered, 1 the function failed (or the API answered 5xx), 2 no stack.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from devstack import ACCESS_KEY_ID, HOST, REGION, REPO_ROOT, SECRET_ACCESS_KEY
from devstack.template import load_template

#: Where ``make run`` writes it (EVRESERVE_ENV_JSON moves it: the tests keep a developer's file).
ENV_JSON = Path(os.environ.get("EVRESERVE_ENV_JSON") or REPO_ROOT / ".local" / "env.json")
#: Declared (empty) in template.yaml's Globals so that ``sam local``'s env.json may set them.
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_EVENTBRIDGE")


def logical_id(name: str) -> str:
    """``reservations`` -> ``ReservationsFunction`` (by CodeUri); a logical id is returned as is."""
    resources = load_template()["Resources"]
    if name in resources:
        return name
    for resource_id, resource in resources.items():
        code_uri = str((resource.get("Properties") or {}).get("CodeUri", ""))
        if resource.get("Type") == "AWS::Serverless::Function" and code_uri.strip("/").endswith(f"functions/{name}"):
            return str(resource_id)
    raise SystemExit(f"no function {name!r} in template.yaml (a logical id, or a directory under functions/)")


def lambda_client(api_url: str) -> Any:
    return boto3.client(
        "lambda",
        endpoint_url=api_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        # Longer than any function's timeout (29 s); an invocation is never retried.
        config=Config(read_timeout=70, connect_timeout=3, retries={"max_attempts": 1}),
    )


def invoke(api_url: str, function: str, event: dict[str, Any]) -> tuple[Any, str | None]:
    """(the function's result, its error kind or None) from the local stack."""
    answer = lambda_client(api_url).invoke(FunctionName=function, Payload=json.dumps(event).encode())
    return json.loads(answer["Payload"].read() or b"null"), answer.get("FunctionError")


def show(result: Any, error: str | None) -> int:
    if error:
        print(f"function error ({error}): {json.dumps(result, indent=2)}")
        return 1
    if isinstance(result, dict) and "statusCode" in result:
        headers = {k: ", ".join(v) for k, v in (result.get("multiValueHeaders") or {}).items()}
        headers.update(result.get("headers") or {})
        print(f"HTTP {result['statusCode']}")
        for name, value in headers.items():
            print(f"{name}: {value}")
        body = result.get("body") or ""
        try:
            print(json.dumps(json.loads(body), indent=2))
        except ValueError:
            print(body if len(body) < 2000 else f"{body[:2000]}... ({len(body)} characters)")
        return 1 if int(result["statusCode"]) >= 500 else 0
    print(json.dumps(result, indent=2))
    return 0


def write_env_json(
    functions: Mapping[str, Mapping[str, str]], aws_env: Mapping[str, str], path: Path = ENV_JSON
) -> Path:
    """SAM's env.json: the endpoints for every function, and each function's own resolved variables."""
    endpoints = {name: aws_env[name] for name in ENDPOINT_VARIABLES}
    document: dict[str, dict[str, str]] = {"Parameters": endpoints}
    for function_id, environment in sorted(functions.items()):
        document[function_id] = {**environment, **endpoints}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("function", help="logical id (ReservationsFunction) or directory (reservations)")
    parser.add_argument("event", type=Path, help="an event file, e.g. events/reserve.json")
    default_api = os.environ.get("EVRESERVE_LOCAL_API", f"http://{HOST}:{os.environ.get('API_PORT', '3000')}")
    parser.add_argument("--api", default=default_api, help=f"the local API (default {default_api})")
    args = parser.parse_args(argv)
    event = json.loads(args.event.read_text(encoding="utf-8"))
    function = logical_id(args.function)
    try:
        result, error = invoke(args.api, function, event)
    except EndpointConnectionError:
        print(f"nothing answers at {args.api}: start the local stack first (make run)", file=sys.stderr)
        return 2
    except ClientError as exc:
        print(f"{exc.response['Error'].get('Code')}: {exc.response['Error'].get('Message')}", file=sys.stderr)
        return 1
    except BotoCoreError as exc:
        print(f"cannot invoke {function}: {exc}", file=sys.stderr)
        return 2
    return show(result, error)


if __name__ == "__main__":
    raise SystemExit(main())
