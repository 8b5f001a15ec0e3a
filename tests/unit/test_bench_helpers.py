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


# -- plots.py ---------------------------------------------------------------------------

MACHINE = {"date": "2026-12-07T07:00:00+00:00", "cpus": 2, "cpu_model": "test", "python": "3.12.1"}


def _document(benchmark: str, results: list[dict[str, object]], smoke: bool = False) -> str:
    document = {"benchmark": benchmark, "smoke": smoke, "machine": MACHINE, "results": results}
    return "== the table a person reads\n" + json.dumps(document) + "\n"


def test_plots_draw_each_benchmark_figure_from_its_json(tmp_path: Path) -> None:
    """Given outputs of the four benchmarks (whole stdout), one PNG each comes out, and the same
    data draws the same bytes."""
    plots = _load("plots")
    roundtrip = tmp_path / "roundtrip.out"
    roundtrip.write_text(
        _document(
            "reservation_roundtrip",
            [
                {"path": path, "concurrent": c, "p50_ms": 10.0 * c, "p99_ms": 30.0 * c}
                for path in ("floor (direct socket)", "stack (HTTP -> charger -> HTTP)")
                for c in (1, 10)
            ],
        )
    )
    throughput = tmp_path / "throughput.json"
    throughput.write_text(
        _document(
            "gateway_throughput",
            [
                {"server": server, "chargers": n, "load": load, "msg_per_s": 1000.0 + n}
                for server in ("echo", "ours", "ocpp-rpc")
                for n in (100, 1000)
                for load in ("heartbeat", "realistic")
            ]
            + [{"server": "ours", "chargers": 10, "load": "heartbeat", "msg_per_s": None}],
        )
    )
    memory = tmp_path / "memory.json"
    memory.write_text(
        _document(
            "gateway_memory",
            [{"server": s, "chargers": n, "rss_connected_mib": n / 10} for s in ("echo", "ours") for n in (100, 1000)],
        )
    )
    clients = tmp_path / "clients.json"
    clients.write_text(
        _document(
            "aws_clients",
            [{"operation": op, "awsjson_cpu_us": 500, "botocore_cpu_us": 1700} for op in ("GetItem", "PutEvents")],
        )
    )
    out = tmp_path / "img"
    written = plots.draw([roundtrip, throughput, memory, clients], out)
    assert sorted(p.name for p in written) == ["aws_clients.png", "memory.png", "roundtrip.png", "throughput.png"]
    first = {p.name: p.read_bytes() for p in written}
    assert all(data.startswith(b"\x89PNG") and len(data) > 10_000 for data in first.values())
    plots.draw([roundtrip, throughput, memory, clients], out)
    assert {p.name: p.read_bytes() for p in written} == first


def test_plots_refuse_a_smoke_run_and_an_unknown_benchmark(tmp_path: Path) -> None:
    plots = _load("plots")
    smoke = tmp_path / "smoke.json"
    smoke.write_text(_document("gateway_memory", [], smoke=True))
    with pytest.raises(ValueError, match="smoke"):
        plots.draw([smoke], tmp_path)
    other = tmp_path / "other.json"
    other.write_text(_document("request_costs", []))
    with pytest.raises(ValueError, match="no figure for"):
        plots.draw([other], tmp_path)
    nothing = tmp_path / "nothing.txt"
    nothing.write_text("no json here\n")
    with pytest.raises(ValueError, match="no benchmark JSON"):
        plots.draw([nothing], tmp_path)
