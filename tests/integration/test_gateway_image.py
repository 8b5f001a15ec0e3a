"""gateway/Dockerfile without Docker: its own install step in a fresh venv, and static checks.

No Docker engine here, so the image is proven piece by piece:

* the build context is rebuilt from the files ``Dockerfile.dockerignore`` lets in, the
  build stage's ``COPY`` lines are applied to it, and its ``RUN pip install ...`` runs
  as written in a fresh venv: a file the install needs but the context leaves out, or an
  editable/path install that only works from the source tree, fails here;
* the installed package (not the source tree) imports, serves ``/health`` against the
  local stack and exits 0 on SIGTERM: what ECS does to a task;
* the runtime stage runs as non-root, has a HEALTHCHECK and an exec-form ENTRYPOINT.

For speed only, pip's cache is used (unlike ``PIP_NO_CACHE_DIR=1`` in the image). The
third-party packages come from ``gateway/requirements.txt`` with hash checking, as in the
image: a package missing from that lock fails ``pip check`` here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "gateway" / "Dockerfile"
DOCKERIGNORE = REPO / "gateway" / "Dockerfile.dockerignore"


# -- reading the Dockerfile ------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, continuation lines joined, comments dropped."""
    logical: list[str] = []
    buffer = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        logical.append(buffer + stripped)
        buffer = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages:
            if keyword == "ARG" and "=" in rest:
                key, _, value = rest.partition("=")
                args[key] = value
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))[1]


# -- the build context, as BuildKit would send it --------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    pattern = pattern.strip().strip("/")
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(excludes, pattern) per rule, in order: the last rule matching a path decides."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        rules.append((not negated, _pattern_regex(line.removeprefix("!"))))
    return rules


def excluded(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: a pattern matches a path or any of its parent directories."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for excludes, regex in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            verdict = excludes
    return verdict


def build_context(destination: Path) -> list[str]:
    """Copy the repository files the dockerignore admits into ``destination``."""
    rules = dockerignore_rules(DOCKERIGNORE.read_text(encoding="utf-8"))
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    # Untracked-but-ignored files (egg-info, __pycache__) exist in a developer's tree and
    # BuildKit would see them: add what is on disk under the admitted trees too.
    on_disk = [
        str(p.relative_to(REPO)) for top in ("layers", "gateway") for p in (REPO / top).rglob("*") if p.is_file()
    ]
    copied = []
    for relative in sorted(set(tracked) | set(on_disk)):
        if excluded(relative, rules) or not (REPO / relative).is_file():
            continue
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, target)
        copied.append(relative)
    return copied


def test_dockerignore_admits_the_sources_and_nothing_else():
    """The context holds the core and the gateway, without caches, egg-info or secrets."""
    rules = dockerignore_rules(DOCKERIGNORE.read_text(encoding="utf-8"))
    assert not excluded("layers/core/pyproject.toml", rules)
    assert not excluded("gateway/evreserve_gateway/__main__.py", rules)
    for path in (
        "layers/core/evreserve_core.egg-info/PKG-INFO",
        "gateway/evreserve_gateway/__pycache__/gateway.cpython-312.pyc",
        ".venv/bin/python",
        ".git/config",
        "template.yaml",
        "tests/conftest.py",
        "layers/lambda/evreserve_lambda/app.py",
    ):
        assert excluded(path, rules), path


# -- the install step, in a fresh venv -------------------------------------------------


def _python_for_the_image() -> str:
    """A Python of the image's minor version when one is installed, else this one."""
    # pyenv's shims answer to `python3.12` even when it is not the selected version, and
    # then fail: look in the versions directory itself.
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = sorted(pyenv_root.glob("versions/3.12.*/bin/python3.12"))
    if candidates:
        return str(candidates[-1])
    found = shutil.which("python3.12")
    if found and "shims" not in found:
        return found
    return sys.executable


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, stages: list[Stage]) -> Path:
    """The build stage replayed: context, COPY lines, WORKDIR, its pip install; returns the venv."""
    build = next(s for s in stages if s.name == "build")
    root = tmp_path_factory.mktemp("image")
    context, workdir, venv = root / "context", root / "src", root / "venv"
    build_context(context)
    (workdir_arg,) = build.all("WORKDIR")
    assert workdir_arg == "/src"
    workdir.mkdir()
    for copy in build.all("COPY"):
        source, target = shlex.split(copy)
        assert not source.startswith("--from"), "the build stage copies only from the context"
        assert (context / source).exists(), f"COPY {source}: not in the build context"
        if (context / source).is_dir():
            shutil.copytree(context / source, workdir / target, dirs_exist_ok=True)
        else:
            (workdir / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(context / source, workdir / target)
    subprocess.run([_python_for_the_image(), "-m", "venv", str(venv)], check=True)
    installs = [run for run in build.all("RUN") if "pip install" in run]
    assert any("--require-hashes" in run for run in installs), "third-party packages are installed from the lock"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_"))}
    environ["PATH"] = f"{venv / 'bin'}{os.pathsep}{environ['PATH']}"
    for run in installs:
        for step in run.split("&&"):
            argv = shlex.split(step)
            assert argv[0] == "pip" and "-e" not in argv and "--editable" not in argv, step
            extra = ["--disable-pip-version-check", "-q"] if argv[1] == "install" else []
            done = subprocess.run(
                [str(venv / "bin" / "pip"), *argv[1:], *extra],
                cwd=workdir,
                env=environ,
                capture_output=True,
                text=True,
                check=False,
                timeout=540,
            )
            assert done.returncode == 0, step + "\n" + done.stdout[-3000:] + done.stderr[-3000:]
    # The image keeps only the venv: the sources must not be needed any more.
    shutil.rmtree(workdir)
    return venv


def _clean_env(venv: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    environ["PATH"] = f"{venv / 'bin'}{os.pathsep}{environ['PATH']}"
    environ.update(extra or {})
    return environ


def test_installed_package_imports_from_the_venv_not_the_tree(installed: Path, tmp_path: Path):
    """The entrypoint module imports from site-packages, with the core and py.typed shipped."""
    code = (
        "import json, evreserve, evreserve_gateway.__main__ as m, evreserve_gateway, pathlib;"
        "import importlib.util as u;"
        "print(json.dumps([m.__file__, evreserve.__file__,"
        " (pathlib.Path(evreserve.__file__).parent / 'py.typed').is_file(),"
        " [n for n in ('evreserve_lambda', 'aws_lambda_powertools') if u.find_spec(n)]]))"
    )
    done = subprocess.run(
        [str(installed / "bin" / "python"), "-c", code],
        cwd=tmp_path,
        env=_clean_env(installed),
        capture_output=True,
        text=True,
        check=True,
    )
    gateway_file, core_file, typed, lambda_glue = json.loads(done.stdout)
    assert lambda_glue == [], "the gateway image installs the Lambda glue"
    for path in (gateway_file, core_file):
        assert Path(path).is_relative_to(installed), path
    assert typed
    assert (installed / "bin" / "evreserve-gateway").is_file()


def test_installed_entrypoint_refuses_missing_settings(installed: Path, tmp_path: Path):
    """``python -m evreserve_gateway`` with no table names exits 2 after logging why."""
    environ = _clean_env(installed)
    for name in ("REGISTRY_TABLE", "RESERVATIONS_TABLE", "COMMANDS_TABLE"):
        environ.pop(name, None)
    done = subprocess.run(
        [str(installed / "bin" / "python"), "-m", "evreserve_gateway"],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "invalid settings" in done.stdout + done.stderr


def test_installed_gateway_serves_health_and_drains_on_sigterm(installed: Path, tmp_path: Path, local_aws):
    """The installed gateway answers GET /health, and SIGTERM (ECS stopping a task) exits 0."""
    from devstack.gateways import free_port

    port = free_port()
    environ = _clean_env(
        installed,
        {**local_aws.env(), "GATEWAY_PORT": str(port), "GATEWAY_QUEUE_WAIT_S": "1", "INSTANCE_ID": "image-test"},
    )
    process = subprocess.Popen(
        [str(installed / "bin" / "python"), "-m", "evreserve_gateway"],
        cwd=tmp_path,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        health = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                    health = json.load(answer)
                    break
            except OSError:
                time.sleep(0.2)
        assert health is not None, "no /health answer"
        assert health["status"] == "ok" and health["instanceId"] == "image-test"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        output = process.stdout.read() if process.stdout else ""
    assert "Traceback" not in output, output[-3000:]


# -- static checks of the runtime stage ------------------------------------------------


def test_image_is_multi_stage_on_a_pinned_slim_base(stages: list[Stage]):
    """Two stages, the base pinned to a patch release of a slim image, no pip in the runtime stage."""
    assert len(stages) == 2 and stages[0].name == "build"
    for stage in stages:
        assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", stage.base), stage.base
    assert not any("pip" in run for run in stages[-1].all("RUN"))
    assert stages[-1].all("COPY") == ["--from=build /opt/venv /opt/venv"]


def test_runtime_stage_runs_as_non_root(stages: list[Stage]):
    """The last USER is a non-zero numeric uid (Kubernetes/ECS can verify it without /etc/passwd)."""
    (user,) = stages[-1].all("USER")[-1:]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0


def test_runtime_stage_has_a_healthcheck_on_the_health_endpoint(stages: list[Stage]):
    """HEALTHCHECK in exec form against /health on GATEWAY_PORT."""
    (check,) = stages[-1].all("HEALTHCHECK")
    command = check.split(" CMD ", 1)[1]
    assert json.loads(command)[0] == "python"
    assert "/health" in command and "GATEWAY_PORT" in command


def test_entrypoint_is_exec_form_so_sigterm_reaches_python(stages: list[Stage]):
    """Exec-form ENTRYPOINT: Python is PID 1 and gets SIGTERM itself (a shell form would swallow it)."""
    (entrypoint,) = stages[-1].all("ENTRYPOINT")
    assert json.loads(entrypoint) == ["python", "-m", "evreserve_gateway"]
    assert stages[-1].all("STOPSIGNAL") in ([], ["SIGTERM"])
    assert not stages[-1].all("CMD")


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "hadolint").exists(), reason="hadolint not installed")
def test_hadolint_is_clean():
    """hadolint finds nothing (`make lint` runs it too)."""
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "hadolint"), str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
