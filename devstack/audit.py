"""``make audit``: known vulnerabilities in the dependencies that ship, failing on any with a fix.

What ships is the Lambda layers (``evreserve-core`` and ``evreserve-lambda``) and the
gateway image (``evreserve-gateway``, with ``evreserve-core``): their installed requirement
closure, pinned to the versions in this venv, is handed to ``pip-audit`` (PyPI's
advisory data, no resolution). Dev tools do not ship and are not audited.

Where PyPI's per-release JSON API is out of reach (this workplace reaches only the
project-level ``/pypi/<name>/json``), pip-audit reports those packages as skipped; they
are then checked with the project-level document, whose ``vulnerabilities`` are those of
the latest release: exact for a package installed at its latest version, and reported
as not audited otherwise. The run fails on a vulnerability that has a fixed version, and
when nothing at all could be audited (a check that did not run must not pass).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

#: The distributions that ship, with the extras they are installed with.
SHIPPED = (("evreserve-core", ()), ("evreserve-lambda", ()), ("evreserve-gateway", ()))
_OURS = {"evreserve-core", "evreserve-lambda", "evreserve-gateway"}
PYPI_PROJECT = "https://pypi.org/pypi/{name}/json"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def shipped_closure() -> dict[str, str]:
    """canonical name -> installed version, for every dependency of what ships."""
    found: dict[str, str] = {}
    todo: list[tuple[str, tuple[str, ...]]] = list(SHIPPED)
    while todo:
        name, extras = todo.pop()
        dist = metadata.distribution(name)
        key = canonical(dist.metadata["Name"])
        if key in found and not extras:
            continue
        found[key] = dist.version
        for text in dist.requires or []:
            requirement = Requirement(text)
            environments = [{"extra": e} for e in extras] or [{"extra": ""}]
            if requirement.marker is not None and not any(requirement.marker.evaluate(env) for env in environments):
                continue
            if canonical(requirement.name) not in found or requirement.extras:
                todo.append((requirement.name, tuple(requirement.extras)))
    return {name: version for name, version in found.items() if name not in _OURS}


@dataclass
class Report:
    audited: dict[str, str] = field(default_factory=dict)
    unaudited: dict[str, str] = field(default_factory=dict)
    #: (package, version, advisory id, fixed versions)
    vulnerable: list[tuple[str, str, str, list[str]]] = field(default_factory=list)


def pip_audit(pins: dict[str, str], report: Report) -> list[str]:
    """Audit the pins with pip-audit; returns the packages it had to skip."""
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "shipped.txt"
        requirements.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())), encoding="utf-8")
        command = [sys.executable, "-m", "pip_audit", "-r", str(requirements), "--no-deps", "--disable-pip"]
        done = subprocess.run(
            [*command, "--format", "json", "--progress-spinner", "off"],
            capture_output=True,
            text=True,
            check=False,
        )
    try:
        result = json.loads(done.stdout)
    except json.JSONDecodeError:
        print(done.stderr, file=sys.stderr)
        return sorted(pins)
    skipped = []
    for dependency in result.get("dependencies", []):
        name, version = canonical(dependency["name"]), dependency.get("version", pins.get(dependency["name"], ""))
        if "skip_reason" in dependency:
            skipped.append(name)
            continue
        report.audited[name] = version
        for vuln in dependency.get("vulns", []):
            report.vulnerable.append((name, version, vuln["id"], list(vuln.get("fix_versions", []))))
    return skipped


def project_document(name: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(PYPI_PROJECT.format(name=name), timeout=20) as answer:  # noqa: S310
            document: dict[str, object] = json.load(answer)
            return document
    except (OSError, ValueError):
        return None


def latest_release_check(name: str, version: str, report: Report) -> None:
    document = project_document(name)
    info = document.get("info") if document else None
    latest = info.get("version") if isinstance(info, dict) else None
    if document is None or latest != version:
        report.unaudited[name] = f"{version} (latest {latest})" if latest else f"{version} (PyPI unreachable)"
        return
    report.audited[name] = version
    vulns = document.get("vulnerabilities")
    for vuln in vulns if isinstance(vulns, list) else []:
        if isinstance(vuln, dict) and not vuln.get("withdrawn"):
            report.vulnerable.append((name, version, str(vuln.get("id")), [str(v) for v in vuln.get("fixed_in") or []]))


def main() -> int:
    pins = shipped_closure()
    report = Report()
    for name in pip_audit(pins, report):
        latest_release_check(name, pins[name], report)
    fixable = [v for v in report.vulnerable if v[3]]
    print(f"audited {len(report.audited)} of {len(pins)} shipped dependencies")
    for name, why in sorted(report.unaudited.items()):
        print(f"  not audited: {name} {why}")
    for name, version, vuln_id, fixes in report.vulnerable:
        print(
            f"  {'FIX AVAILABLE' if fixes else 'no fix yet'}: {name} {version} {vuln_id} -> {', '.join(fixes) or '-'}"
        )
    if not report.audited:
        print("nothing could be audited: the advisory data is out of reach", file=sys.stderr)
        return 1
    return 1 if fixable else 0


if __name__ == "__main__":
    raise SystemExit(main())
