"""The API fuzzed from its own OpenAPI document (schemathesis) through the local API.

Every operation of ``docs/openapi.json`` gets generated requests (valid ones, and
schemathesis' edge cases within the schema), sent with an admin key and with an account
key that owns a registered charger. Each answer must not be a 5xx and must match the
document: a documented status code, the documented content type and headers, a body of
the documented schema. Examples are bounded and derandomized, so a run is repeatable and
stays under a minute; the number of requests is printed (docs/security.md records it).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from devstack import REPO_ROOT

pytestmark = pytest.mark.integration

#: Generated cases per operation and key (19 operations x 2 keys; ~2,000 requests, ~50 s).
MAX_EXAMPLES = 15
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

schema = schemathesis.openapi.from_dict(json.loads((REPO_ROOT / "docs" / "openapi.json").read_text()))
SENT: Counter[str] = Counter()


@pytest.fixture(scope="module")
def keys(local_api: Any, admin_api_key: str) -> Iterator[dict[str, str]]:
    """The admin key, and the key of a fresh account with one registered (never connected) charger."""
    admin = {"Authorization": f"Bearer {admin_api_key}"}
    with httpx.Client(base_url=local_api.url, timeout=30) as http:
        account = http.post("/api/admin/accounts", json={"name": "fuzz"}, headers=admin).json()["data"]
        issued = http.post(f"/api/admin/accounts/{account['id']}/api-keys", json={"name": "fuzz"}, headers=admin)
        key = issued.json()["data"]["apiKey"]
        registered = http.post(
            "/api/chargers",
            json={"ocppId": f"FUZZ-{account['id']}", "ports": [{"portNumber": 1}, {"portNumber": 2}]},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert registered.status_code == 201, registered.text
    yield {"admin": admin_api_key, "account": key}
    print(f"\nfuzzed {sum(SENT.values())} requests: {dict(sorted(SENT.items()))}")


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        yield http


@pytest.mark.parametrize("who", ["admin", "account"])
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_api_answers_as_documented(case: Any, who: str, keys: dict[str, str], local_api: Any, session: Any):
    """No 5xx, and status, content type, headers and body as the OpenAPI document says."""
    headers = {"Authorization": f"Bearer {keys[who]}"}
    response = case.call(base_url=local_api.url, session=session, headers=headers, timeout=40)
    SENT[f"{case.method} {case.path}"] += 1
    case.validate_response(response, checks=CHECKS, headers=headers)
