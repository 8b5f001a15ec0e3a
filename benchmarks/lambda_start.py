"""Lambda start: each function's cold import and first request, and the warm latency of a request failing validation.

    .venv/bin/python benchmarks/lambda_start.py [--smoke] [--repeat 5] [--calls 500] [--tracing on|off|both]

Cold start: for each ``functions/*/*.py``, a fresh interpreter runs, under
``python -X importtime``, ``import <module>`` with the function's directory on
``sys.path`` (as the Lambda runtime has it; the layer is installed), then hands its
handler the invalid request below. ``import_ms`` is the module's cumulative import
time from ``-X importtime`` (the issue's target); ``first_request_ms`` the first
invocation after it, whatever it imports or builds lazily; ``cold_total_ms`` their
sum: Lambda runs both back to back, so work moved from the import into the first
request does not shorten a cold start. ``services_ms`` then times building the
services (settings, the DynamoDB and SQS clients; under ``AWS_CLIENT=botocore`` they
load botocore's service JSON): what the first request that does reach AWS adds on top, before any network.
Each figure is the median of ``--repeat`` fresh processes, bytecode caches present as
in a deployed package; ``process_ms`` is the whole child process's wall time and
``process_cpu_ms`` its CPU time (user + system), which waits for CPUs busy elsewhere
inflate less than wall times; a bare ``python -c pass`` is given for scale. The heaviest
imports are listed for the slowest function.

Two environments (``--tracing``): ``on`` is the one deployed (template.yaml turns
X-Ray active tracing on): ``LAMBDA_TASK_ROOT`` set, as the runtime sets it, which is
what makes the X-Ray SDK and Powertools' Tracer behave as in Lambda, and a sampled
``_X_AMZN_TRACE_ID``, so the first request records its subsegments (sent over UDP to
a daemon that is not there, as cheap as the real one). ``off`` is the local stack's:
``POWERTOOLS_TRACE_DISABLED=true`` outside Lambda.

Warm: the handler, imported once in this process (tracing off), is invoked with the
sample event of ``events/`` for one of its routes, its body made invalid (or, for the
authorizer, a malformed Authorization header): the pure-CPU path of parsing, routing,
validating and answering, no AWS call. ``--calls`` invocations after one warm-up; p50/p99.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import importlib.util
import io
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import PYTHON, REPO_ROOT, Report, summarize_ms

FUNCTIONS = REPO_ROOT / "functions"
EVENTS = REPO_ROOT / "events"


def deployed_constants() -> dict[str, str]:
    """The functions' variables template.yaml sets to a constant (``PYDANTIC_DISABLE_PLUGINS``,
    Powertools' names), so that a cold start here runs with what the deployed one has."""
    from devstack.template import load_template

    variables = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    return {name: value for name, value in variables.items() if isinstance(value, str) and value}


#: An environment in which importing and validating cannot reach AWS: the endpoints are
#: a closed local port, so an accidental call fails at once instead of waiting.
ENV = {
    **deployed_constants(),
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:9",
    "AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:9",
    "AWS_ENDPOINT_URL_EVENTBRIDGE": "http://127.0.0.1:9",
    "GATEWAY_QUEUE_PREFIX": "bench-gw-",
    "POWERTOOLS_SERVICE_NAME": "evreserve",
    "POWERTOOLS_METRICS_NAMESPACE": "EvReserve",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "ERROR",
}
#: Per function: (sample event, how to make it fail validation), or for a function with
#: no AWS-free failure, a request it serves without AWS.
INVALID: dict[str, tuple[str, Any]] = {
    "reservations": ("reserve.json", {"body": json.dumps({"portId": "not-a-number", "expiryDate": "tomorrow"})}),
    "chargers": ("register-charger.json", {"body": json.dumps({"ocppId": "", "ports": []})}),
    "admin": ("create-account.json", {"body": json.dumps({"name": ""})}),
    "authorizer": ("authorizer.json", {"headers": {"Authorization": "Basic not-a-bearer-token"}}),
    "access_ids": ("create-access-id.json", {"body": json.dumps({"ocppIdTag": "", "type": "Nonsense"})}),
    "messages": ("list-ocpp-messages.json", {"queryStringParameters": {"chargerId": "x"}}),
    "webhooks": ("create-webhook.json", {"body": json.dumps({"url": "not a url"})}),
    "docs": ("get-docs.json", {}),
}
#: Functions fed by an event source: an empty batch runs the handler without AWS.
EMPTY_BATCH = {"publisher": {"Records": []}, "deliverer": {"Records": []}}
#: What the Lambda runtime adds in the deployed environment (``LAMBDA_TASK_ROOT`` is
#: set to the function's directory per run).
TRACING_ON = {
    "AWS_LAMBDA_FUNCTION_NAME": "bench",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
    "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
    "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
    "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    "POWERTOOLS_TRACE_DISABLED": "false",
}
#: The fresh process: import the function, then one request, then the services. Its
#: figures go to stderr after a marker (stdout carries the function's metrics). The
#: event arrives on stdin, read only after the import so nothing is loaded early.
CHILD = """
import sys, time
sys.path.insert(0, sys.argv[1])
function = __import__(sys.argv[2])
import json

class Context:
    function_name = "bench"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    memory_limit_in_mb = 512
    aws_request_id = "bench-request"
    log_group_name = "/aws/lambda/bench"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self):
        return 30000

event_text = sys.stdin.read()
first_ms = answer = None
if event_text:
    event = json.loads(event_text)
    t2 = time.perf_counter()
    try:
        out = function.handler(event, Context())
        answer = str(out.get("statusCode")) if isinstance(out, dict) else type(out).__name__
    except Exception as exc:
        answer = "raised " + str(exc)
    first_ms = (time.perf_counter() - t2) * 1000
t3 = time.perf_counter()
services_ms = None
if hasattr(function, "services"):
    function.services()
    services_ms = (time.perf_counter() - t3) * 1000
figures = {"first_request_ms": first_ms, "services_ms": services_ms, "answer": answer}
print("LAMBDA_START " + json.dumps(figures), file=sys.stderr)
"""
_IMPORTTIME = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def function_modules() -> list[Path]:
    return sorted(p for p in FUNCTIONS.glob("*/*.py") if not p.name.startswith("_"))


def environment(module: Path, tracing: str) -> dict[str, str]:
    env = {**os.environ, **template_environment().get(module.parent.name, {}), **ENV}
    for name in ("LAMBDA_TASK_ROOT", *TRACING_ON):
        env.pop(name, None)
    if tracing == "on":
        env.update(TRACING_ON, LAMBDA_TASK_ROOT=str(module.parent))
    return env


def cold_start(module: Path, tracing: str) -> dict[str, Any]:
    event = invalid_event(module.parent.name)
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", CHILD, str(module.parent), module.stem],
        input=json.dumps(event) if event is not None else "",
        env=environment(module, tracing),
        cwd=module.parent,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    wall = (time.perf_counter() - t0) * 1000
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) * 1000
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    cumulative_us = 0
    # A module's line comes after its children's; depth 0 is one space after the bar,
    # each level two more. The function module's own imports are the depth-1 lines
    # between the previous depth-0 line and its own.
    children: list[tuple[int, str]] = []
    top_level: list[tuple[int, str]] = []
    by_self: list[tuple[int, str]] = []
    figures: dict[str, Any] = {}
    for line in done.stderr.splitlines():
        if line.startswith("LAMBDA_START "):
            figures = json.loads(line.removeprefix("LAMBDA_START "))
            continue
        match = _IMPORTTIME.match(line)
        if not match:
            continue
        self_us, cumulative, indent, name = match.groups()
        by_self.append((int(self_us), name))
        depth = (len(indent) - 1) // 2
        if depth == 1:
            children.append((int(cumulative), name))
        elif depth == 0:
            if name == module.stem:
                cumulative_us, top_level = int(cumulative), children
            children = []
    import_ms = cumulative_us / 1000
    first_ms = figures.get("first_request_ms")
    return {
        "import_ms": import_ms,
        "first_request_ms": first_ms,
        "cold_total_ms": None if first_ms is None else import_ms + first_ms,
        "services_ms": figures.get("services_ms"),
        "process_ms": wall,
        "process_cpu_ms": cpu,
        "first_answer": figures.get("answer"),
        "heaviest": sorted(top_level, reverse=True)[:5],
        "self_heaviest": sorted(by_self, reverse=True)[:8],
    }


def bare_interpreter_ms() -> float:
    t0 = time.perf_counter()
    subprocess.run([PYTHON, "-c", "pass"], check=True, timeout=60)
    return (time.perf_counter() - t0) * 1000


def load_handler(module: Path) -> Any:
    sys.path.insert(0, str(module.parent))
    spec = importlib.util.spec_from_file_location(f"bench_{module.stem}", module)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded  # as an import would (dataclasses and pydantic look it up)
    spec.loader.exec_module(loaded)
    return loaded.handler


class Context:
    """What the handlers read from a Lambda context."""

    function_name = "bench"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    memory_limit_in_mb = 512
    aws_request_id = "bench-request"
    log_group_name = "/aws/lambda/bench"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@functools.cache
def template_environment() -> dict[str, dict[str, str]]:
    """Each function's variables as template.yaml declares them (tables named ``bench-*``): one source of truth."""
    from devstack.local_api import read_template
    from devstack.template import load_template
    from evreserve.resources import BUS_ENV, DESTINATION_QUEUE_ENV, QUEUE_ENV, TABLE_ENV

    resources = (TABLE_ENV, QUEUE_ENV, BUS_ENV, DESTINATION_QUEUE_ENV)
    names = {var: f"bench-{var.lower().replace('_', '-')}" for env in resources for var in env.values()}
    definition = read_template(load_template(), REPO_ROOT, {**ENV, **names})
    by_directory = {}
    for spec in definition.functions.values():
        by_directory[spec.code_uri.name] = {k: v for k, v in spec.environment.items() if k not in ENV or v}
    return by_directory


def invalid_event(function: str) -> dict[str, Any] | None:
    if function in EMPTY_BATCH:
        return copy.deepcopy(EMPTY_BATCH[function])
    if function not in INVALID:
        return None
    name, change = INVALID[function]
    path = EVENTS / name
    if not path.exists():
        return None
    event = copy.deepcopy(json.loads(path.read_text()))
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(event.get(key), dict):
            event[key] = {**event[key], **value}
        else:
            event[key] = value
    # Without a caller the functions skip the per-key rate limit, their one DynamoDB write
    # before routing; an invalid body is refused before the caller is needed.
    event.get("requestContext", {}).pop("authorizer", None)
    return event


def warm_latency(module: Path, calls: int) -> dict[str, Any]:
    event = invalid_event(module.parent.name)
    if event is None:
        return {"warm_error": "no sample event"}
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        handler = load_handler(module)
        samples: list[float] = []
        outcome = ""

        def invoke() -> str:
            try:
                answer = handler(copy.deepcopy(event), Context())
            except Exception as exc:  # the authorizer refuses by raising, as API Gateway expects
                return f"raised {exc}"
            return str(answer.get("statusCode")) if isinstance(answer, dict) else type(answer).__name__

        outcome = invoke()  # warm-up: lazy imports, validators built
        for _ in range(calls):
            t0 = time.perf_counter()
            invoke()
            samples.append((time.perf_counter() - t0) * 1000)
    summary = summarize_ms(samples)
    return {"warm_p50_ms": summary["p50_ms"], "warm_p99_ms": summary["p99_ms"], "answer": outcome}


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(values), 1) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one cold start each, 20 warm calls")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument(
        "--tracing", choices=("on", "off", "both"), default=None, help="default: both (with --smoke: on, as deployed)"
    )
    args = parser.parse_args()
    repeat, calls = (1, 20) if args.smoke else (args.repeat, args.calls)
    tracing = args.tracing or ("on" if args.smoke else "both")
    modes = ("on", "off") if tracing == "both" else (tracing,)
    report = Report("lambda_start", smoke=args.smoke)
    os.environ.update(ENV)
    for variables in template_environment().values():
        os.environ.update({k: v for k, v in variables.items() if k not in os.environ})
    modules = function_modules()
    if not modules:
        report.todo.append("no function modules under functions/*/*.py")
    bare = statistics.median(bare_interpreter_ms() for _ in range(max(1, repeat)))
    report.notes.append(
        f"a bare `python -c pass` takes {bare:.0f} ms here; process_ms includes it, the import, the first"
        " request and the services"
    )
    warm = {module: warm_latency(module, calls) for module in modules}
    slowest: tuple[float, str, list[Any], list[Any]] = (0.0, "", [], [])
    worst_total, worst_function = 0.0, ""
    for module in modules:
        # Interleaved, so a burst of load elsewhere does not fall on one environment only.
        runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
        for _ in range(repeat):
            for mode in modes:
                runs[mode].append(cold_start(module, mode))
        for mode in modes:
            errors = [r["error"] for r in runs[mode] if "error" in r]
            if errors:
                report.add(function=module.parent.name, tracing=mode, error=errors[0][:200])
                report.todo.append(f"{module.parent.name} (tracing {mode}): failed: {errors[0][:200]}")
                continue
            import_ms = _median(runs[mode], "import_ms") or 0.0
            total = _median(runs[mode], "cold_total_ms")
            report.add(
                function=module.parent.name,
                tracing=mode,
                import_ms=import_ms,
                first_request_ms=_median(runs[mode], "first_request_ms"),
                cold_total_ms=total,
                services_ms=_median(runs[mode], "services_ms"),
                process_ms=_median(runs[mode], "process_ms"),
                process_cpu_ms=_median(runs[mode], "process_cpu_ms"),
                first_answer=runs[mode][0]["first_answer"],
                **warm[module],
            )
            if mode == "on" and total is not None and total > worst_total:
                worst_total, worst_function = total, module.parent.name
            if import_ms > slowest[0]:
                first = runs[mode][0]
                name = f"{module.parent.name} (tracing {mode})"
                slowest = (import_ms, name, first["heaviest"], first["self_heaviest"])
    if slowest[1]:
        report.extra["heaviest_imports_of_slowest"] = {
            "function": slowest[1],
            "imports_ms": {name: round(us / 1000, 1) for us, name in slowest[2]},
            "modules_by_own_time_ms": {name: round(us / 1000, 1) for us, name in slowest[3]},
        }
        report.notes.append(
            f"heaviest first-level imports of {slowest[1]}: "
            + ", ".join(f"{name} {us / 1000:.0f} ms" for us, name in slowest[2])
        )
        report.notes.append(
            "modules with the most own import time there: "
            + ", ".join(f"{name} {us / 1000:.0f} ms" for us, name in slowest[3])
        )
        report.target("slowest function import ms (cold)", round(slowest[0], 1), 300, at_least=False)
        report.target(
            f"slowest cold total ms, tracing on ({worst_function})", round(worst_total, 1), 300, at_least=False
        )
        report.notes.append(
            "cold total = import + first request; a first request that reaches AWS adds services_ms before its"
            " first network call; sweeper has no AWS-free request, so its figure is the import alone"
        )
    report.emit()


if __name__ == "__main__":
    os.chdir(REPO_ROOT)
    main()
