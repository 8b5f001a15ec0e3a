"""``make lock``: one resolution of every Python dependency, with hashes, and each artifact's share of it.

``requirements-dev.in`` (the tools, plus our own packages, whose dependencies ship) is
resolved by uv into ``requirements-dev.txt`` for Python 3.12 on every platform, with
the hash of every file of every pinned release. Each shipped artifact then gets its
own lock, resolved with that file as constraints, so its versions are the ones the
tests ran against:

- ``layers/core/requirements.txt``: the core layer (``sam build`` installs it);
- ``layers/lambda/requirements.txt``: the functions' layer, which also carries the AWS
  SDK the core declares: its aws-xray-sdk needs botocore, and a botocore of ours beside
  the runtime's boto3 would pair versions never tested together;
- ``gateway/requirements.txt``: the gateway image.

``sam build`` resolves each layer's file alone, and pip's hash-checking mode wants every
dependency of every package pinned in the same file, so a package both layers need
(typing-extensions) is in both, at the one version.

``requirements-sam.txt`` locks the SAM CLI's own venv. Every consumer installs with
hash checking (``pip install --require-hashes``), and our own packages with
``--no-deps`` on top. ``tests/unit/test_locks.py`` checks, offline, that the derived
locks agree with the dev lock and that the venv holds exactly the dev lock.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from devstack import REPO_ROOT

PYTHON_VERSION = "3.12"
OURS = ("evreserve-core", "evreserve-lambda", "evreserve-gateway", "evreserve-devtools")
DEV_IN = REPO_ROOT / "requirements-dev.in"
DEV_LOCK = REPO_ROOT / "requirements-dev.txt"
SAM_IN = REPO_ROOT / "requirements-sam.in"
SAM_LOCK = REPO_ROOT / "requirements-sam.txt"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)(?: ; ([^\\\n]+))?", re.MULTILINE)
_HASH = re.compile(r"--hash=(sha256:[0-9a-f]{64})")


@dataclass(frozen=True)
class Artifact:
    lock: Path
    #: Our packages whose declared dependencies make up the artifact.
    packages: tuple[str, ...]
    why: str
    #: Declared by those packages but packed by another artifact.
    without: tuple[str, ...] = ()
    #: (package, requirement name): a requirement another package declares, packed here.
    plus: tuple[tuple[str, str], ...] = ()


ARTIFACTS = (
    Artifact(
        REPO_ROOT / "layers" / "core" / "requirements.txt",
        ("layers/core",),
        "The core Lambda layer (sam build); boto3 is in the functions' layer.",
        without=("boto3",),
    ),
    Artifact(
        REPO_ROOT / "layers" / "lambda" / "requirements.txt",
        ("layers/lambda",),
        "The functions' Lambda layer (sam build), with the AWS SDK the core layer declares.",
        plus=(("layers/core", "boto3"),),
    ),
    Artifact(
        REPO_ROOT / "gateway" / "requirements.txt",
        ("layers/core", "gateway"),
        "The gateway image (gateway/Dockerfile).",
    ),
)


def canonical(name: str) -> str:
    return str(canonicalize_name(name))


@dataclass(frozen=True)
class Pin:
    version: str
    #: The environment marker, or "" when the package is wanted everywhere.
    marker: str
    hashes: frozenset[str]


def entries(text: str) -> dict[str, Pin]:
    """canonical name -> pin, for every ``name==version [; marker]`` entry of a lock."""
    found = {}
    matches = list(_PIN.finditer(text))
    for match, following in zip(matches, [*matches[1:], None], strict=True):
        block = text[match.end() : following.start() if following else len(text)]
        hashes = frozenset(_HASH.findall(block))
        found[canonical(match[1])] = Pin(match[2], (match[3] or "").strip(), hashes)
    return found


def pins(text: str) -> dict[str, str]:
    """canonical name -> version of every entry of a lock."""
    return {name: pin.version for name, pin in entries(text).items()}


def declared(package: str) -> list[str]:
    """A project's dependencies from its pyproject.toml, our own packages left out."""
    project = tomllib.loads((REPO_ROOT / package / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [d for d in project.get("dependencies", []) if canonical(Requirement(d).name) not in OURS]


def uv(*args: str) -> str:
    command = [str(Path(sys.executable).with_name("uv")), "pip", "compile", "--quiet", "--universal"]
    command += ["--python-version", PYTHON_VERSION, "--generate-hashes", "--no-header", "--no-annotate"]
    done = subprocess.run([*command, *args], capture_output=True, text=True, check=False, cwd=REPO_ROOT)
    if done.returncode != 0:
        raise SystemExit(f"uv pip compile {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def header(why: str, source: str) -> str:
    return f"# {why}\n# Made by `make lock` (devstack/lock.py) from {source}; do not edit.\n"


def compile_in_place(source: Path, lock: Path, why: str, *args: str) -> None:
    """Resolve ``source`` into ``lock``; uv keeps the pins already there unless told to upgrade."""
    uv(str(source), "--output-file", str(lock), *args)
    lock.write_text(header(why, source.name) + lock.read_text(encoding="utf-8"), encoding="utf-8")


def roots(artifact: Artifact) -> list[str]:
    """The requirements an artifact's lock is resolved from."""
    found = [r for package in artifact.packages for r in declared(package)]
    found = [r for r in found if canonical(Requirement(r).name) not in artifact.without]
    found += [r for package, name in artifact.plus for r in declared(package) if canonical(Requirement(r).name) == name]
    return found


def derive(artifact: Artifact) -> str:
    """The artifact's lock: its roots resolved within the dev lock's versions (so within its hashes too)."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "artifact.in"
        source.write_text("\n".join(roots(artifact)) + "\n", encoding="utf-8")
        body = uv(str(source), "--constraint", str(DEV_LOCK))
    return header(artifact.why, f"{', '.join(artifact.packages)} within requirements-dev.txt") + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upgrade", action="store_true", help="move every pin to its newest release")
    upgrade = ["--upgrade"] if parser.parse_args(argv).upgrade else []
    no_emit = [f"--no-emit-package={n}" for n in OURS]
    compile_in_place(
        DEV_IN, DEV_LOCK, "Every Python package of the dev venv (make test, make run).", *no_emit, *upgrade
    )
    compile_in_place(SAM_IN, SAM_LOCK, "The SAM CLI's venv (.venv-sam).", *upgrade)
    for artifact in ARTIFACTS:
        text = derive(artifact)
        artifact.lock.write_text(text, encoding="utf-8")
        print(f"wrote {artifact.lock.relative_to(REPO_ROOT)}: {len(pins(text))} packages")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
