"""``make audit``: known vulnerabilities in exactly what ships, failing on any with a fix.

What ships is what the artifact locks pin (devstack/lock.py): the core and functions'
Lambda layers and the gateway image. Their ``name==version`` entries are handed to
``pip-audit`` (PyPI's advisory data, no resolution); nothing from the dev venv is read.

Where PyPI's per-release JSON API is out of reach (this workplace reaches only the
project-level ``/pypi/<name>/json``), pip-audit reports those packages as skipped; they
are then checked with the project-level document, whose ``vulnerabilities`` are those of
the latest release: exact for a package locked at its latest version. A package that no
source could audit fails ``make audit`` (``--unaudited=fail``); ``make test`` runs with
``--unaudited=report``, which lists it instead, so that a routine upstream release after
``make lock`` does not fail a build that changed nothing. Both fail on a vulnerability
that has a fixed version, and when nothing at all could be audited (a check that did not
run must not pass).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from devstack.lock import ARTIFACTS, canonical, pins

PYPI_PROJECT = "https://pypi.org/pypi/{name}/json"


def shipped_pins() -> dict[str, str]:
    """canonical name -> locked version, for every package of every shipped artifact."""
    found: dict[str, str] = {}
    for artifact in ARTIFACTS:
        found.update(pins(artifact.lock.read_text(encoding="utf-8")))
    return found


@dataclass
class Report:
    audited: dict[str, str] = field(default_factory=dict)
    unaudited: dict[str, str] = field(default_factory=dict)
    #: (package, version, advisory id, fixed versions)
    vulnerable: list[tuple[str, str, str, list[str]]] = field(default_factory=list)


def pip_audit(locked: dict[str, str], report: Report) -> list[str]:
    """Audit the pins with pip-audit; returns the packages it had to skip."""
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "shipped.txt"
        requirements.write_text("".join(f"{n}=={v}\n" for n, v in sorted(locked.items())), encoding="utf-8")
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
        return sorted(locked)
    skipped = []
    for dependency in result.get("dependencies", []):
        name, version = canonical(dependency["name"]), dependency.get("version", locked.get(dependency["name"], ""))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--unaudited",
        choices=("fail", "report"),
        default="fail",
        help="what a package no advisory source could audit does to the run (default: fail)",
    )
    args = parser.parse_args(argv)
    locked = shipped_pins()
    report = Report()
    for name in pip_audit(locked, report):
        latest_release_check(name, locked[name], report)
    fixable = [v for v in report.vulnerable if v[3]]
    print(f"audited {len(report.audited)} of {len(locked)} locked shipped packages")
    for name, why in sorted(report.unaudited.items()):
        print(f"  not audited: {name} {why}")
    for name, version, vuln_id, fixes in report.vulnerable:
        print(
            f"  {'FIX AVAILABLE' if fixes else 'no fix yet'}: {name} {version} {vuln_id} -> {', '.join(fixes) or '-'}"
        )
    if not report.audited:
        print("nothing could be audited: the advisory data is out of reach", file=sys.stderr)
        return 1
    if report.unaudited and args.unaudited == "fail":
        print(
            "some locked packages could not be audited: a release below the latest is audited only where "
            "PyPI's per-release data is reachable; `make lock UPGRADE=1` moves pins to the latest where "
            "other packages' bounds allow"
        )
        return 1
    return 1 if fixable else 0


if __name__ == "__main__":
    raise SystemExit(main())
