"""docs/performance.md's figures, drawn from the JSON the benchmarks print.

    .venv/bin/python benchmarks/plots.py [--out docs/img] RESULT.json ...

Each RESULT is a benchmark's output (its whole stdout, or only its last line: the JSON
document ``common.Report.emit`` prints). What each benchmark gives:

* ``reservation_roundtrip`` -> ``roundtrip.png``: p50 and p99 against concurrency, the
  stack beside the direct-socket floor;
* ``gateway_throughput`` -> ``throughput.png``: msg/s against chargers, one panel per
  load mix, every server;
* ``gateway_memory`` -> ``memory.png``: RSS with every charger connected against
  chargers, every server;
* ``aws_clients`` -> ``aws_clients.png``: CPU per call of each operation, awsjson beside
  botocore.

Several files of one benchmark are drawn together (e.g. runs at different sizes); a
smoke run is refused, its figures mean nothing. The data behind the committed figures
is in ``docs/data/`` (``make plots`` redraws them).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display here or in CI

import matplotlib.pyplot as plt  # after the backend is chosen

#: One colour per server or path, the same in every figure.
COLOURS = {
    "ours": "tab:blue",
    "ours-nolog": "tab:cyan",
    "echo": "tab:gray",
    "echo+deflate": "tab:brown",
    "naive": "tab:orange",
    "ocpp-rpc": "tab:green",
}


def read_document(path: Path) -> dict[str, Any]:
    """The benchmark's JSON document: the last line of its output that parses as one."""
    for line in reversed(path.read_text(encoding="utf-8").splitlines()):
        if line.startswith("{"):
            try:
                document = json.loads(line)
            except ValueError:
                continue
            if isinstance(document, dict) and "benchmark" in document:
                return document
    raise ValueError(f"{path}: no benchmark JSON in it")


def _style(label: str) -> dict[str, Any]:
    colour = COLOURS.get(label)
    if colour is None:
        colour = "tab:blue" if label.startswith("stack") else "tab:gray" if label.startswith("floor") else None
    return {"color": colour} if colour else {}


def _caption(documents: list[dict[str, Any]]) -> str:
    machine = documents[0]["machine"]
    dates = sorted({str(d["machine"]["date"])[:10] for d in documents})
    return f"{', '.join(dates)}, {machine['cpus']} CPUs ({machine['cpu_model']}), Python {machine['python']}"


def roundtrip(documents: list[dict[str, Any]], out: Path) -> Path:
    series: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for document in documents:
        for row in document["results"]:
            series[row["path"]].append((int(row["concurrent"]), float(row["p50_ms"]), float(row["p99_ms"])))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, points in sorted(series.items()):
        points.sort()
        x = [p[0] for p in points]
        style = _style(label)
        ax.plot(x, [p[1] for p in points], marker="o", label=f"{label}, p50", **style)
        ax.plot(x, [p[2] for p in points], marker="^", linestyle="--", label=f"{label}, p99", **style)
    _axes(ax, "concurrent clients", "reservation round trip, ms", "Reservation round trip against concurrency")
    return _save(fig, documents, out / "roundtrip.png")


def throughput(documents: list[dict[str, Any]], out: Path) -> Path:
    #: mix -> server -> chargers -> msg/s (the median when several runs measured a point)
    points: dict[str, dict[str, dict[int, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for document in documents:
        for row in document["results"]:
            if row.get("msg_per_s") is None:
                continue
            points[row["load"]][row["server"]][int(row["chargers"])].append(float(row["msg_per_s"]))
    mixes = sorted(points)
    fig, axes = plt.subplots(1, len(mixes), figsize=(6 * len(mixes), 4.2), squeeze=False)
    for ax, mix in zip(axes[0], mixes, strict=True):
        for server, by_size in sorted(points[mix].items()):
            sizes = sorted(by_size)
            ax.plot(sizes, [_median(by_size[s]) for s in sizes], marker="o", label=server, **_style(server))
        _axes(ax, "chargers", "messages / s", f"Gateway throughput, {mix} mix", log_y=False)
    return _save(fig, documents, out / "throughput.png")


def memory(documents: list[dict[str, Any]], out: Path) -> Path:
    points: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for document in documents:
        for row in document["results"]:
            if row.get("rss_connected_mib") is None:
                continue
            points[row["server"]][int(row["chargers"])].append(float(row["rss_connected_mib"]))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for server, by_size in sorted(points.items()):
        sizes = sorted(by_size)
        ax.plot(sizes, [_median(by_size[s]) for s in sizes], marker="o", label=server, **_style(server))
    _axes(ax, "chargers connected", "server RSS, MiB", "Gateway memory against chargers")
    return _save(fig, documents, out / "memory.png")


def aws_clients(documents: list[dict[str, Any]], out: Path) -> Path:
    rows = [row for document in documents for row in document["results"]]
    operations = list(dict.fromkeys(row["operation"] for row in rows))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    height = 0.38
    for offset, (client, colour) in enumerate((("awsjson", "tab:blue"), ("botocore", "tab:gray"))):
        cpu = [_median([r[f"{client}_cpu_us"] for r in rows if r["operation"] == op]) for op in operations]
        positions = [i + (offset - 0.5) * height for i in range(len(operations))]
        ax.barh(positions, cpu, height=height, label=client, color=colour)
    ax.set_yticks(range(len(operations)), operations, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("CPU per call, µs (the calling thread)")
    ax.set_title("AWS calls: evreserve.awsjson beside botocore")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, documents, out / "aws_clients.png")


DRAWERS = {
    "reservation_roundtrip": roundtrip,
    "gateway_throughput": throughput,
    "gateway_memory": memory,
    "aws_clients": aws_clients,
}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _axes(ax: Any, x_label: str, y_label: str, title: str, *, log_y: bool = True) -> None:
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def _save(fig: Any, documents: list[dict[str, Any]], path: Path) -> Path:
    """Caption the figure with when and where its data was measured, and write it."""
    fig.text(0.01, 0.01, _caption(documents), fontsize=7, alpha=0.7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    # No timestamp in the file: the same data draws the same bytes (a diff means new data).
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def draw(paths: Iterable[Path], out: Path) -> list[Path]:
    """Draw every figure the files have data for; the files written."""
    by_benchmark: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in paths:
        document = read_document(path)
        if document.get("smoke"):
            raise ValueError(f"{path}: a smoke run; its figures mean nothing")
        by_benchmark[document["benchmark"]].append(document)
    unknown = set(by_benchmark) - set(DRAWERS)
    if unknown:
        raise ValueError(f"no figure for {sorted(unknown)}; figures exist for {sorted(DRAWERS)}")
    out.mkdir(parents=True, exist_ok=True)
    return [DRAWERS[name](documents, out) for name, documents in sorted(by_benchmark.items())]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="benchmark outputs (JSON)")
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args(argv)
    try:
        written = draw(args.results, args.out)
    except (OSError, ValueError) as exc:
        print(f"plots: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
