"""Every benchmark runs in its --smoke mode and prints its figures as JSON (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
#: The scripts `make bench` runs; the helpers beside them are not benchmarks.
SCRIPTS = [
    "gateway_throughput",
    "gateway_memory",
    "reservation_roundtrip",
    "request_costs",
    "aws_clients",
    "lambda_start",
    "message_log_cost",
    "session_cost",
]

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_smoke_prints_its_json_figures(script: str) -> None:
    """GIVEN a benchmark WHEN run with --smoke THEN it exits 0 and its last line is its JSON report with rows."""
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{script}.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(done.stdout.strip().splitlines()[-1])
    assert document["benchmark"] == script
    assert document["smoke"] is True
    assert document["results"], document.get("todo")
    assert all(isinstance(row, dict) for row in document["results"])
    # A row that failed is a benchmark that no longer measures anything (lambda_start once
    # printed an error for every function and still passed here).
    failed = [row for row in document["results"] if "error" in row]
    assert not failed, failed
