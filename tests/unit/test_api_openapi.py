"""The committed OpenAPI document is the one the code generates (CI fails when stale)."""

from __future__ import annotations

from devstack import openapi
from devstack.template import load_template


def test_committed_openapi_documents_are_current():
    """docs/openapi.json and the layer's served copy equal a fresh generation (python -m devstack.openapi)."""
    expected = openapi.render()
    for path in openapi.OUTPUTS:
        assert path.read_text(encoding="utf-8") == expected, f"{path} is stale: run python -m devstack.openapi"


def template_routes() -> set[tuple[str, str]]:
    """(path, method) of every ``Type: Api`` event in template.yaml."""
    routes = set()
    for resource in load_template()["Resources"].values():
        for event in (resource.get("Properties") or {}).get("Events", {}).values():
            if event.get("Type") == "Api":
                routes.add((event["Properties"]["Path"], event["Properties"]["Method"].lower()))
    return routes


def test_document_has_every_route_and_no_422():
    """Every route of the template is documented, with this API's 400 instead of Powertools' 422."""
    document = openapi.build_document()
    operations = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert ("/api/ocpp/reservations", "post") in operations
    assert ("/api/ocpp/reservations/cancel", "post") in operations
    assert ("/api/ocpp-messages", "get") in operations
    assert ("/api/webhooks/{webhookId}/deliveries", "get") in operations
    assert operations == template_routes()
    for ops in document["paths"].values():
        for op in ops.values():
            assert "422" not in op["responses"] and "400" in op["responses"]
