"""Lambda start: cold import time of each function module, and warm latency of a request failing validation.

    .venv/bin/python benchmarks/lambda_start.py [--smoke] [--repeat 5] [--calls 500]

Cold import: for each ``functions/*/*.py``, a fresh interpreter runs
``python -X importtime -c "import <module>"`` with the function's directory on
``sys.path`` (as the Lambda runtime has it; the layer is installed). The figure is the
module's cumulative import time from ``-X importtime`` (the median of ``--repeat`` fresh
processes, bytecode caches present as in a deployed package), beside the whole
process's wall time and a bare ``python -c pass`` for scale. The five heaviest imports
are listed for the slowest function.

Warm: the handler, imported once in this process, is invoked with the sample event of
``events/`` for one of its routes, its body made invalid (or, for the authorizer, a
malformed Authorization header): the pure-CPU path of parsing, routing, validating and
answering, no AWS call. ``--calls`` invocations after one warm-up; p50/p99.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import io
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import PYTHON, REPO_ROOT, Report, summarize_ms

FUNCTIONS = REPO_ROOT / "functions"
EVENTS = REPO_ROOT / "events"
#: An environment in which importing and validating cannot reach AWS: the endpoints are
#: a closed local port, so an accidental call fails at once instead of waiting.
ENV = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:9",
    "AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:9",
    "REGISTRY_TABLE": "bench-registry",
    "RESERVATIONS_TABLE": "bench-reservations",
    "COMMANDS_TABLE": "bench-commands",
    "RATE_LIMIT_TABLE": "bench-rate-limit",
    "POWERTOOLS_SERVICE_NAME": "evreserve",
    "POWERTOOLS_METRICS_NAMESPACE": "EvReserve",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "ERROR",
}
#: Per function: (sample event, how to make it fail validation).
INVALID: dict[str, tuple[str, Any]] = {
    "reservations": ("reserve.json", {"body": json.dumps({"portId": "not-a-number", "expiryDate": "tomorrow"})}),
    "chargers": ("register-charger.json", {"body": json.dumps({"ocppId": "", "ports": []})}),
    "admin": ("create-account.json", {"body": json.dumps({"name": ""})}),
    "authorizer": ("authorizer.json", {"headers": {"Authorization": "Basic not-a-bearer-token"}}),
}
_IMPORTTIME = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def function_modules() -> list[Path]:
    return sorted(p for p in FUNCTIONS.glob("*/*.py") if not p.name.startswith("_"))


def cold_import(module: Path) -> dict[str, Any]:
    code = f"import sys; sys.path.insert(0, {str(module.parent)!r}); import {module.stem}"
    t0 = time.perf_counter()
    done = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", code],
        env={**os.environ, **ENV},
        cwd=module.parent,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    wall = (time.perf_counter() - t0) * 1000
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    cumulative_us = 0
    # A module's line comes after its children's; depth 0 is one space after the bar,
    # each level two more. The function module's own imports are the depth-1 lines
    # between the previous depth-0 line and its own.
    children: list[tuple[int, str]] = []
    top_level: list[tuple[int, str]] = []
    by_self: list[tuple[int, str]] = []
    for line in done.stderr.splitlines():
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
    return {
        "import_ms": cumulative_us / 1000,
        "process_ms": wall,
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


def invalid_event(function: str) -> dict[str, Any] | None:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one cold import each, 20 warm calls")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    repeat, calls = (1, 20) if args.smoke else (args.repeat, args.calls)
    report = Report("lambda_start", smoke=args.smoke)
    os.environ.update(ENV)
    modules = function_modules()
    if not modules:
        report.todo.append("no function modules under functions/*/*.py")
    bare = statistics.median(bare_interpreter_ms() for _ in range(max(1, repeat)))
    report.notes.append(f"a bare `python -c pass` takes {bare:.0f} ms here; process_ms includes it")
    slowest: tuple[float, str, list[Any], list[Any]] = (0.0, "", [], [])
    for module in modules:
        runs = [cold_import(module) for _ in range(repeat)]
        errors = [r["error"] for r in runs if "error" in r]
        if errors:
            report.add(function=module.parent.name, module=module.name, error=errors[0][:200])
            report.todo.append(f"{module.parent.name}: import failed: {errors[0][:200]}")
            continue
        import_ms = statistics.median(r["import_ms"] for r in runs)
        process_ms = statistics.median(r["process_ms"] for r in runs)
        warm = warm_latency(module, calls)
        report.add(
            function=module.parent.name,
            module=module.name,
            import_ms=round(import_ms, 1),
            process_ms=round(process_ms, 1),
            **warm,
        )
        if import_ms > slowest[0]:
            slowest = (import_ms, module.parent.name, runs[0]["heaviest"], runs[0]["self_heaviest"])
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
    report.emit()


if __name__ == "__main__":
    os.chdir(REPO_ROOT)
    main()
