"""The functions' tracer: nothing of the X-Ray SDK where tracing is off, no library patched in Lambda.

Which modules a fresh interpreter loads is the behaviour under test, so those tests
import the glue in a child process with the environment of each case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from evreserve_lambda.tracing import NoTracing, create_tracer

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
_LOADED = (
    "import json, sys; import evreserve_lambda.app as app; from evreserve.awsjson import client; "
    "print(json.dumps({'disabled': app.tracer.disabled, 'modules': sorted(sys.modules), "
    "'aws_calls_recorded': bool(client._OBSERVER)}))"
)


def loaded_by_the_glue(**env: str) -> dict[str, Any]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "LAMBDA_", "AWS_SAM"))}
    done = subprocess.run(
        [sys.executable, "-c", _LOADED],
        env={**clean, "AWS_REGION": "us-east-1", "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_where_tracing_is_disabled_the_xray_sdk_is_never_imported() -> None:
    """GIVEN POWERTOOLS_TRACE_DISABLED WHEN the glue is imported THEN no X-Ray SDK module is loaded."""
    loaded = loaded_by_the_glue(POWERTOOLS_TRACE_DISABLED="true")
    assert loaded["disabled"] is True
    assert not [m for m in loaded["modules"] if m.startswith("aws_xray_sdk.core")]
    assert loaded["aws_calls_recorded"] is False


def test_in_lambda_with_tracing_the_sdk_patches_no_library() -> None:
    """GIVEN Lambda's environment with tracing on WHEN the glue is imported THEN no library is
    instrumented (awsjson records its calls itself), and urllib3 and botocore's client are not loaded (the
    SDK imports botocore's top package only)."""
    loaded = loaded_by_the_glue(LAMBDA_TASK_ROOT=str(FUNCTIONS / "admin"))
    patches = [m for m in loaded["modules"] if m.startswith("aws_xray_sdk.ext.") and m.endswith(".patch")]
    assert loaded["disabled"] is False
    assert [m for m in loaded["modules"] if m.startswith("aws_xray_sdk.core")]
    assert patches == []
    assert not [m for m in loaded["modules"] if m.startswith(("urllib3", "botocore.", "http.client"))]
    assert loaded["aws_calls_recorded"] is True  # evreserve.awsjson's calls get their subsegments


def test_in_lambda_on_botocore_the_sdk_patches_botocore() -> None:
    """GIVEN AWS_CLIENT=botocore WHEN the glue is imported in Lambda THEN botocore's calls are instrumented."""
    loaded = loaded_by_the_glue(LAMBDA_TASK_ROOT=str(FUNCTIONS / "admin"), AWS_CLIENT="botocore")
    patches = [m for m in loaded["modules"] if m.startswith("aws_xray_sdk.ext.") and m.endswith(".patch")]
    assert patches == ["aws_xray_sdk.ext.botocore.patch"]


def test_a_method_traced_while_tracing_is_off_answers_and_raises_as_untraced(monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN tracing off WHEN a captured method returns or raises THEN the caller sees exactly that."""
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    tracer = create_tracer()
    assert isinstance(tracer.provider, NoTracing)

    @tracer.capture_method
    def double(value: int) -> int:
        if value < 0:
            raise ValueError("negative")
        return value * 2

    handler = tracer.capture_lambda_handler(lambda event, _context: {"statusCode": 200, "body": event})
    assert double(21) == 42
    with pytest.raises(ValueError, match="negative"):
        double(-1)
    assert handler("x", None) == {"statusCode": 200, "body": "x"}
