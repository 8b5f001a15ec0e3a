"""The layout rules of docs/decisions.md ("One home for each concern"), checked on the source tree.

Imports flow one way (core <- Lambda glue <- functions; core <- gateway), the gateway
image never needs the Lambda glue, one module alone touches the ``ocpp`` library's
private API, and no module or class grows past what a newcomer can read in one go.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "layers" / "core" / "evreserve"
LAMBDA = REPO / "layers" / "lambda" / "evreserve_lambda"
GATEWAY = REPO / "gateway" / "evreserve_gateway"
MAX_MODULE_LINES = 450
MAX_CLASS_LINES = 300


def modules(*roots: Path) -> Iterator[Path]:
    for root in roots:
        yield from sorted(root.rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Top-level package names a module imports (absolute imports only)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def relative(path: Path) -> str:
    return str(path.relative_to(REPO))


@pytest.mark.parametrize("path", list(modules(CORE, LAMBDA, GATEWAY)), ids=relative)
def test_module_and_class_sizes(path: Path) -> None:
    """No module under layers/ or gateway/ over 450 lines, no class over 300."""
    source = path.read_text(encoding="utf-8")
    assert len(source.splitlines()) <= MAX_MODULE_LINES
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            assert node.end_lineno is not None
            assert node.end_lineno - node.lineno + 1 <= MAX_CLASS_LINES, node.name


@pytest.mark.parametrize("path", list(modules(CORE)), ids=relative)
def test_core_imports_no_transport_library(path: Path) -> None:
    """The shared core knows neither Powertools, websockets, ocpp, nor the functions' or gateway's code."""
    forbidden = {"aws_lambda_powertools", "websockets", "ocpp", "evreserve_lambda", "evreserve_gateway"}
    assert not imported(path) & forbidden


@pytest.mark.parametrize("path", list(modules(GATEWAY)), ids=relative)
def test_gateway_never_needs_the_lambda_glue(path: Path) -> None:
    """The gateway image installs the core and the gateway only (layers/lambda is the functions')."""
    assert not imported(path) & {"aws_lambda_powertools", "evreserve_lambda"}


def _touches_ocpp_private_api(tree: ast.AST) -> bool:
    """A private name imported from ``ocpp``, read off a name bound to it, or a subclass of its ChargePoint."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names if a.name.split(".")[0] == "ocpp")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "ocpp":
            if any(a.name.startswith("_") for a in node.names):
                return True
            bound.update(a.asname or a.name for a in node.names)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in bound:
                return True
        if isinstance(node, ast.ClassDef) and any(ast.unparse(b).endswith("ChargePoint") for b in node.bases):
            return True
    return False


def test_one_module_touches_the_ocpp_library_private_api() -> None:
    """Only protocol/library.py uses the ``ocpp`` library's private API: an upgrade breaks one file."""
    touching = [
        relative(path)
        for path in modules(GATEWAY)
        if _touches_ocpp_private_api(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert touching == ["gateway/evreserve_gateway/protocol/library.py"]
