"""The benchmark helpers compute what their tables say, and the load generator speaks valid OCPP 1.6."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from ocpp.messages import Call, _validate_payload

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str) -> ModuleType:
    # The scripts import each other as siblings (`from common import ...`), as when run.
    if str(BENCHMARKS) not in sys.path:
        sys.path.append(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def common() -> ModuleType:
    return _load("common")


@pytest.fixture(scope="module")
def loadgen() -> ModuleType:
    return _load("loadgen")


def test_percentile_is_nearest_rank(common: ModuleType) -> None:
    """p50 of 1..100 is 50 and p99 is 99: no interpolation between samples."""
    samples = list(range(1, 101))
    assert common.percentile(samples, 50) == 50
    assert common.percentile(samples, 99) == 99
    assert common.percentile(samples, 100) == 100


def test_percentile_of_nothing_is_nan(common: ModuleType) -> None:
    """An empty run reports NaN rather than a made-up zero."""
    assert common.percentile([], 99) != common.percentile([], 99)


def test_target_records_whether_it_was_met(common: ModuleType) -> None:
    """A ≥ target below its limit is missed; an unmeasured one is neither met nor missed."""
    report = common.Report("unit")
    report.target("ratio", 0.75, 0.8, at_least=True)
    report.target("kib", 18.0, 20, at_least=False)
    report.target("absent", None, 1, at_least=True)
    assert [t["met"] for t in report.targets] == [False, True, None]


def test_report_ends_with_its_json(common: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    """The last line printed is the JSON document the smoke test and to_markdown read."""
    report = common.Report("unit", smoke=True)
    report.add(server="echo", msg_per_s=1234.5)
    report.emit()
    document = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert document["benchmark"] == "unit"
    assert document["results"] == [{"server": "echo", "msg_per_s": 1234.5}]


@pytest.mark.parametrize("action", ["Heartbeat", "StatusNotification", "MeterValues", "BootNotification"])
def test_loadgen_frames_are_valid_ocpp16(loadgen: ModuleType, action: str) -> None:
    """Every CALL the load generator sends passes the ocpp library's 1.6 schema validation."""
    message_type, message_id, name, payload = json.loads(loadgen.frame(action, "m-1", port=2, energy=1234))
    assert (message_type, message_id, name) == (2, "m-1", action)
    _validate_payload(Call(message_id, name, payload), "1.6")  # the sync core of validate_payload


def test_loadgen_names_chargers_from_a_prefix(loadgen: ModuleType) -> None:
    """``prefix`` + ``count`` (+ ``start``) gives the identities the benchmarks register."""
    assert loadgen.ids_of({"prefix": "BENCH-", "count": 3}) == ["BENCH-1", "BENCH-2", "BENCH-3"]
    assert loadgen.ids_of({"prefix": "B", "count": 2, "start": 5}) == ["B5", "B6"]
