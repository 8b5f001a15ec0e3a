"""The committed OpenAPI document is the one the code generates (CI fails when stale)."""

from __future__ import annotations

from devstack import openapi


def test_committed_openapi_documents_are_current():
    """docs/openapi.json and the layer's served copy equal a fresh generation (python -m devstack.openapi)."""
    expected = openapi.render()
    for path in openapi.OUTPUTS:
        assert path.read_text(encoding="utf-8") == expected, f"{path} is stale: run python -m devstack.openapi"


def test_document_has_every_route_and_no_422():
    """Every route of the template is documented, with this API's 400 instead of Powertools' 422."""
    document = openapi.build_document()
    operations = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert ("/api/ocpp/reservations", "post") in operations
    assert ("/api/ocpp/reservations/cancel", "post") in operations
    assert ("/api/ocpp-messages", "get") in operations
    assert len(operations) == 20
    for ops in document["paths"].values():
        for op in ops.values():
            assert "422" not in op["responses"] and "400" in op["responses"]
