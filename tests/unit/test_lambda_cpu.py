"""The local runtime's CPU tally (devstack/lambda_runtime.py): a handler's own CPU, warm invocations only."""

from __future__ import annotations

import textwrap
from pathlib import Path

from devstack.lambda_runtime import FUNCTION_CPU, FunctionEnvironment, FunctionPool, FunctionSpec


def pool(tmp_path: Path, body: str) -> FunctionPool:
    (tmp_path / "busy.py").write_text(textwrap.dedent(body), encoding="utf-8")
    spec = FunctionSpec(logical_id="BusyFunction", code_uri=tmp_path, handler="busy.handler", timeout_s=10)
    return FunctionPool(spec, FunctionEnvironment({spec.logical_id: spec}))


def test_a_handlers_cpu_is_counted_and_its_waits_are_not(tmp_path: Path):
    functions = pool(
        tmp_path,
        """
        import time

        def handler(event, context):
            if event["spin_ms"]:
                end = time.thread_time() + event["spin_ms"] / 1000
                while time.thread_time() < end:
                    pass
            time.sleep(event["sleep_ms"] / 1000)
            return {}
        """,
    )
    FUNCTION_CPU.take()
    cold = functions.invoke({"spin_ms": 0, "sleep_ms": 0})
    assert cold.ok and cold.cold
    assert FUNCTION_CPU.take() == {}, "a cold start's import is not a request's cost"
    spun = functions.invoke({"spin_ms": 40, "sleep_ms": 0})
    slept = functions.invoke({"spin_ms": 0, "sleep_ms": 60})
    assert spun.cpu_ms >= 35 and slept.cpu_ms < 20, (spun.cpu_ms, slept.cpu_ms)
    tallied = FUNCTION_CPU.take()["BusyFunction"]
    assert abs(tallied - (spun.cpu_ms + slept.cpu_ms)) < 0.01
