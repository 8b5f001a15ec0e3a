"""Generate the API's OpenAPI document from the functions' routes.

Each function has its own resolver; the document is their union. It is written to
``docs/openapi.json`` (for people and tools) and to the layer
(``evreserve_lambda/openapi.json``) so that the API can serve it. A unit test fails
when either copy is stale: run ``python -m devstack.openapi`` after changing a route
or a schema.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

from devstack import REPO_ROOT
from devstack.template import load_template

FUNCTIONS = ("reservations", "chargers", "access_ids", "messages", "webhooks", "admin", "docs")
TITLE = "EV charging reservations API"
VERSION = "1.0.0"
DESCRIPTION = (
    "Reserve charging ports on OCPP 1.6 and 2.0.1 chargers, and manage the chargers, accounts and API keys "
    "behind them. Every request carries `Authorization: Bearer {api_key}`, except for this document and "
    "Swagger UI under `/api/docs`. Errors are "
    '`{"error": "...", "code": "..."}`; see docs/api.md for the table of codes.'
)
TAG_ORDER = ("Reservations", "Chargers", "Ports", "Access IDs", "OCPP messages", "Webhooks", "Admin", "Meta")
OUTPUTS = (REPO_ROOT / "docs" / "openapi.json", REPO_ROOT / "layers" / "lambda" / "evreserve_lambda" / "openapi.json")


#: Schemas only Powertools' default 422 refers to.
_UNUSED = frozenset({"HTTPValidationError", "ValidationError", "ResponseValidationError"})


def _load(name: str) -> Any:
    path = REPO_ROOT / "functions" / name / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"openapi_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def open_routes() -> set[tuple[str, str]]:
    """(path, method) of the routes template.yaml opens to callers without a key (``Authorizer: NONE``).

    Read through the local API's own reading of the template, the one place that decides
    which authorizer a route has.
    """
    from devstack.local_api import read_template

    routes = read_template(load_template(), REPO_ROOT, os.environ).routes
    return {(route.path, route.method.lower()) for route in routes if route.authorizer is None}


def build_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for name in FUNCTIONS:
        app = _load(name).app
        document = json.loads(app.get_openapi_json_schema(title=TITLE, version=VERSION))
        for path, operations in document.get("paths", {}).items():
            for operation in operations.values():
                # Powertools documents its default 422; this API answers validation
                # failures with 400 INVALID_REQUEST (declared on every route).
                operation.get("responses", {}).pop("422", None)
            paths.setdefault(path, {}).update(operations)
        schemas.update(document.get("components", {}).get("schemas", {}))
    for path, method in open_routes():
        operation = paths[path][method]
        operation["security"] = []  # no key: the template opens it
        for code in ("401", "403", "429"):
            operation["responses"].pop(code, None)
    text = json.dumps(paths)
    schemas = {name: schema for name, schema in schemas.items() if name not in _UNUSED or f'/{name}"' in text}
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION, "description": DESCRIPTION},
        "servers": [{"url": "http://127.0.0.1:3000", "description": "make run"}],
        # The order Swagger UI shows them in: what partners come for first.
        "tags": [{"name": name} for name in TAG_ORDER],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "description": "The API key"}},
        },
        "security": [{"bearerAuth": []}],
    }


def render() -> str:
    return json.dumps(build_document(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a committed copy is stale")
    args = parser.parse_args(argv)
    text = render()
    stale = [path for path in OUTPUTS if not path.exists() or path.read_text(encoding="utf-8") != text]
    if args.check:
        for path in stale:
            print(f"stale: {path.relative_to(REPO_ROOT)} (run python -m devstack.openapi)", file=sys.stderr)
        return 1 if stale else 0
    for path in OUTPUTS:
        Path(path).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
