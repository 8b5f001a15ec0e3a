"""The local API over template.yaml, against the local AWS stack: the real authorizer and functions."""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any

import pytest

from devstack.local_api import LocalApi

pytestmark = pytest.mark.integration


def get(api: LocalApi, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    connection = http.client.HTTPConnection(api.host, api.port, timeout=30)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        connection.close()


def test_every_template_route_is_served(local_api: LocalApi) -> None:
    """Each Api event of template.yaml is a route, and none was dropped with a warning."""
    assert local_api.definition is not None
    assert not [w for w in local_api.definition.warnings if "not served" in w or "cannot run" in w]
    assert "POST /api/ocpp/reservations -> ReservationsFunction" in local_api.routes()


def test_functions_get_the_local_stacks_resources(local_api: LocalApi, local_aws: Any) -> None:
    """!Ref RegistryTable is the local table; the gateway queue prefix is the stack's."""
    assert local_api.definition is not None
    env = local_api.definition.functions["ReservationsFunction"].environment
    assert env["REGISTRY_TABLE"] == local_aws.resources["REGISTRY_TABLE"]
    assert env["GATEWAY_QUEUE_PREFIX"] == local_aws.env()["GATEWAY_QUEUE_PREFIX"]


def test_missing_authorization_is_the_templates_401(local_api: LocalApi) -> None:
    """No Authorization header: the template's UNAUTHORIZED gateway response."""
    status, _, body = get(local_api, "/api/chargers")
    assert status == 401
    assert body == {"error": "Invalid API key", "code": "INVALID_API_KEY"}


def test_unknown_key_is_401_from_the_authorizer(local_api: LocalApi) -> None:
    """A well-formed but unknown key: the authorizer raises Unauthorized, API Gateway says 401."""
    status, _, body = get(local_api, "/api/chargers", {"Authorization": "Bearer evr_nope_nope"})
    assert status == 401
    assert body["code"] == "INVALID_API_KEY"


def test_unknown_route_is_the_templates_404(local_api: LocalApi) -> None:
    """The template maps MISSING_AUTHENTICATION_TOKEN to the API family's 404."""
    status, _, body = get(local_api, "/api/nothing-here")
    assert status == 404
    assert body == {"error": "Not found", "code": "NOT_FOUND"}


def test_admin_key_reaches_the_admin_function(local_api: LocalApi, admin_api_key: str) -> None:
    """The seeded admin key passes the real authorizer and the admin function answers."""
    status, headers, body = get(local_api, "/api/admin/accounts", {"Authorization": f"Bearer {admin_api_key}"})
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/json")
    assert "data" in body


def test_concurrent_requests_through_the_real_functions(local_api: LocalApi, admin_api_key: str) -> None:
    """50 requests at once through the real authorizer and function all succeed."""
    count = 50
    barrier = threading.Barrier(count)
    statuses: list[int] = []

    def one() -> None:
        barrier.wait()
        statuses.append(get(local_api, "/api/admin/accounts", {"Authorization": f"Bearer {admin_api_key}"})[0])

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * count
