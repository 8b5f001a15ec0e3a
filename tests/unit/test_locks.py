"""The locks (devstack/lock.py): the venv is exactly the dev lock, and each artifact's lock is its share of it.

Offline: what is checked is the committed files against each other and against the
installed distributions' own metadata, so a stale or hand-edited lock fails here.
"""

from __future__ import annotations

from importlib import metadata

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

from devstack import lock

DEV = lock.entries(lock.DEV_LOCK.read_text(encoding="utf-8"))
#: Installed by the venv itself, not by the lock.
BOOTSTRAP = {"pip"}


def applies(pin: lock.Pin) -> bool:
    return not pin.marker or Marker(pin.marker).evaluate()


def installed() -> dict[str, str]:
    return {lock.canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}


def test_the_venv_holds_exactly_the_dev_lock():
    """pip freeze against the lock: every locked package at its version, nothing unlocked beside ours."""
    present = installed()
    wanted = {name: pin.version for name, pin in DEV.items() if applies(pin)}
    missing_or_other = {n: (v, present.get(n)) for n, v in wanted.items() if present.get(n) != v}
    assert not missing_or_other, f"(locked, installed): {missing_or_other}; run `make .venv/.installed`"
    unlocked = set(present) - set(wanted) - set(lock.OURS) - BOOTSTRAP
    assert not unlocked, f"installed but not locked: {sorted(unlocked)}"


def test_every_pin_carries_its_hashes():
    for path in (lock.DEV_LOCK, lock.SAM_LOCK, *(a.lock for a in lock.ARTIFACTS)):
        for name, pin in lock.entries(path.read_text(encoding="utf-8")).items():
            assert pin.hashes, f"{path.name}: {name} has no hash"


@pytest.mark.parametrize("artifact", lock.ARTIFACTS, ids=lambda a: str(a.lock.relative_to(lock.REPO_ROOT)))
def test_an_artifact_lock_is_the_dev_locks_versions_and_hashes(artifact: lock.Artifact):
    """What ships is what was tested: same version, and the same files allowed, as the dev venv."""
    shipped = lock.entries(artifact.lock.read_text(encoding="utf-8"))
    assert shipped
    for name, pin in shipped.items():
        assert name in DEV, f"{name} is shipped but not in the dev lock"
        assert (pin.version, pin.hashes) == (DEV[name].version, DEV[name].hashes), name


def closure(roots: list[str]) -> set[str]:
    """Every distribution the roots need, per the installed metadata."""
    found: set[str] = set()
    todo = [r for r in map(Requirement, roots) if r.marker is None or r.marker.evaluate({"extra": ""})]
    while todo:
        requirement = todo.pop()
        name = lock.canonical(requirement.name)
        if name in found and not requirement.extras:
            continue
        found.add(name)
        for text in metadata.distribution(name).requires or []:
            needed = Requirement(text)
            environments = [{"extra": e} for e in requirement.extras] or [{"extra": ""}]
            if needed.marker is None or any(needed.marker.evaluate(env) for env in environments):
                todo.append(needed)
    return found


@pytest.mark.parametrize("artifact", lock.ARTIFACTS, ids=lambda a: str(a.lock.relative_to(lock.REPO_ROOT)))
def test_an_artifact_lock_is_complete_on_its_own(artifact: lock.Artifact):
    """Its roots' whole closure is in the one file: sam build resolves each layer's file alone, in hash mode."""
    needed = closure(lock.roots(artifact))
    shipped = set(lock.pins(artifact.lock.read_text(encoding="utf-8")))
    assert needed <= shipped, f"needed but not locked: {sorted(needed - shipped)}"
    assert shipped <= needed, f"locked but not needed: {sorted(shipped - needed)}"


@pytest.mark.parametrize("artifact", lock.ARTIFACTS, ids=lambda a: str(a.lock.relative_to(lock.REPO_ROOT)))
def test_each_locked_version_satisfies_what_the_pyprojects_declare(artifact: lock.Artifact):
    """A bound raised in a pyproject.toml without `make lock` fails here, not in a deployment."""
    shipped = lock.pins(artifact.lock.read_text(encoding="utf-8"))
    for root in map(Requirement, lock.roots(artifact)):
        version = shipped[lock.canonical(root.name)]
        assert root.specifier.contains(version, prereleases=True), f"{root} but {version} is locked: run `make lock`"


def test_the_functions_see_one_aws_sdk_pair():
    """boto3 and botocore ship together, in the functions' layer; all the core declares is packed somewhere."""
    core, functions, gateway = (set(lock.pins(a.lock.read_text(encoding="utf-8"))) for a in lock.ARTIFACTS)
    assert {"boto3", "botocore"} <= functions and not {"boto3", "botocore"} & core
    assert {"pydantic", "argon2-cffi", "cryptography"} <= core
    assert {"boto3", "websockets", "ocpp", "pydantic"} <= gateway
    assert not {"aws-lambda-powertools", "aws-xray-sdk"} & gateway, "the gateway image stays free of the Lambda glue"
    declared_by_core = {lock.canonical(Requirement(r).name) for r in lock.declared("layers/core")}
    assert declared_by_core <= core | functions
