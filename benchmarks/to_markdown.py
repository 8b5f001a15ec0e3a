"""Render benchmark JSON reports (the last line a script prints) as Markdown tables.

    .venv/bin/python benchmarks/gateway_memory.py | tee out.txt
    .venv/bin/python benchmarks/to_markdown.py out.txt [more.txt ...]

Used to paste the latest figures into docs/performance.md. Not a benchmark itself.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from common import _cell


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "(no rows)\n"
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render(document: Mapping[str, Any]) -> str:
    machine = document["machine"]
    out = [
        f"### {document['benchmark']}\n",
        f"{machine['date']}, {machine['cpus']} CPUs ({machine['cpu_model']}), Python {machine['python']}; "
        f"load average before {machine['loadavg_before']}, after {machine['loadavg_1_5_15']}.\n",
        table(document["results"]),
    ]
    if document.get("ratios"):
        out.append(table([{"ratio": k, "value": v} for k, v in document["ratios"].items()]))
    if document.get("targets"):
        out.append(table(document["targets"]))
    out += [f"- {note}\n" for note in document.get("notes", [])]
    out += [f"- **TODO** {item}\n" for item in document.get("todo", [])]
    return "\n".join(out)


def main() -> None:
    for name in sys.argv[1:] or ["-"]:
        text = sys.stdin.read() if name == "-" else Path(name).read_text()
        lines = [line for line in text.splitlines() if line.startswith('{"benchmark"')]
        if lines:
            print(render(json.loads(lines[-1])))


if __name__ == "__main__":
    main()
