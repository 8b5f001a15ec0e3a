"""``make audit`` (devstack.audit): which packages are checked and what fails the run."""

from __future__ import annotations

from typing import Any

import pytest

from devstack import audit


def test_what_is_audited_is_the_artifact_locks():
    """The layers' and the gateway's locked pins; no dev tool, not our own packages."""
    pins = audit.shipped_pins()
    assert {"pydantic", "aws-lambda-powertools", "boto3", "websockets", "ocpp"} <= set(pins)
    assert not {"pytest", "ruff", "mypy", "schemathesis", "uv", "evreserve-core"} & set(pins)


@pytest.mark.parametrize(
    ("latest", "vulns", "fails"),
    [
        ("1.0", [{"id": "PYSEC-1", "fixed_in": ["1.1"], "withdrawn": None}], True),
        ("1.0", [{"id": "PYSEC-1", "fixed_in": [], "withdrawn": None}], False),
        ("1.0", [{"id": "PYSEC-1", "fixed_in": ["1.1"], "withdrawn": "2026-01-01"}], False),
        ("2.0", [{"id": "PYSEC-1", "fixed_in": ["2.0"], "withdrawn": None}], False),
    ],
)
def test_a_vulnerability_with_a_fix_fails_the_run(monkeypatch: pytest.MonkeyPatch, latest, vulns, fails):
    """Fixed version known: exit 1; no fix yet, withdrawn, or not the installed release: exit 0."""
    monkeypatch.setattr(audit, "shipped_pins", lambda: {"somepkg": "1.0"})
    monkeypatch.setattr(audit, "pip_audit", lambda pins, report: ["somepkg"])

    def document(name: str) -> dict[str, Any]:
        if name == "other":
            return {"info": {"version": "2.0"}, "vulnerabilities": []}
        return {"info": {"version": latest}, "vulnerabilities": vulns}

    monkeypatch.setattr(audit, "project_document", document)
    if latest != "1.0":
        # Nothing audited at all is a failure of its own; audit one more package cleanly.
        monkeypatch.setattr(audit, "shipped_pins", lambda: {"somepkg": "1.0", "other": "2.0"})
        monkeypatch.setattr(audit, "pip_audit", lambda pins, report: ["somepkg", "other"])
    assert audit.main(["--unaudited=report"]) == (1 if fails else 0)


@pytest.mark.parametrize(("mode", "code"), [("fail", 1), ("report", 0)])
def test_a_package_no_source_could_audit(monkeypatch: pytest.MonkeyPatch, capsys, mode, code):
    """Locked below its latest release with per-release data out of reach: fatal for `make audit`, listed for CI."""
    monkeypatch.setattr(audit, "shipped_pins", lambda: {"old": "1.0", "other": "2.0"})
    monkeypatch.setattr(audit, "pip_audit", lambda pins, report: ["old", "other"])
    monkeypatch.setattr(audit, "project_document", lambda name: {"info": {"version": "2.0"}, "vulnerabilities": []})
    assert audit.main([f"--unaudited={mode}"]) == code
    assert "not audited: old 1.0 (latest 2.0)" in capsys.readouterr().out


def test_nothing_audited_fails(monkeypatch: pytest.MonkeyPatch):
    """Advisory data out of reach for every package: the check did not run, so it fails."""
    monkeypatch.setattr(audit, "shipped_pins", lambda: {"somepkg": "1.0"})
    monkeypatch.setattr(audit, "pip_audit", lambda pins, report: ["somepkg"])
    monkeypatch.setattr(audit, "project_document", lambda name: None)
    assert audit.main(["--unaudited=report"]) == 1
