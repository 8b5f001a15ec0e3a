"""The per-key rate limit over HTTP, on a local API of its own with a limit of a few requests.

The count lives in DynamoDB (RateLimitTable), so it holds across the function instances
the local API runs concurrent requests on, as it must across Lambda sandboxes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devstack.local_api import LocalApi

pytestmark = pytest.mark.integration

LIMIT = 5


@pytest.fixture(scope="module")
def keys(local_api: LocalApi, admin_api_key: str) -> list[str]:
    """Two unlimited keys of a fresh account, issued through the session's API (not counted here)."""
    admin = {"Authorization": f"Bearer {admin_api_key}"}
    with httpx.Client(base_url=local_api.url, timeout=30) as http:
        account = http.post("/api/admin/accounts", json={"name": "rl"}, headers=admin).json()["data"]
        issued = []
        for name in ("a", "b", "c"):
            answer = http.post(f"/api/admin/accounts/{account['id']}/api-keys", json={"name": name}, headers=admin)
            issued.append(answer.json()["data"]["apiKey"])
        return issued


@pytest.fixture(scope="module")
def limited_api(keys: list[str]) -> Iterator[LocalApi]:
    """The template's API with RATE_LIMIT_PER_MINUTE=5.

    Started after the keys are issued: a function reads the limit from the process
    environment at its cold start, and while this API runs that says 5 for every API
    of the process.
    """
    with LocalApi(port=0, environment={"RATE_LIMIT_PER_MINUTE": str(LIMIT)}) as api:
        yield api


def _wait_for_a_fresh_window(needed_s: float = 15) -> None:
    # The window is the clock's minute: start early in one so the whole test falls in it.
    if 60 - time.time() % 60 < needed_s:
        time.sleep(60 - time.time() % 60 + 0.1)


async def _get(http: httpx.AsyncClient, key: str) -> httpx.Response:
    return await http.get("/api/chargers", headers={"Authorization": f"Bearer {key}"})


async def test_over_the_limit_is_429_with_retry_after(limited_api: LocalApi, keys: list[str]):
    """GIVEN a limit of 5/min WHEN a key sends 12 requests at once THEN exactly 5 pass, 7 get 429 + Retry-After."""
    _wait_for_a_fresh_window()
    async with httpx.AsyncClient(base_url=limited_api.url, timeout=30) as http:
        answers = await asyncio.gather(*(_get(http, keys[0]) for _ in range(12)))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200] * LIMIT + [429] * (12 - LIMIT), statuses
        refused = next(a for a in answers if a.status_code == 429)
        body: dict[str, Any] = refused.json()
        assert body["code"] == "RATE_LIMITED" and isinstance(body["error"], str)
        retry_after = int(refused.headers["Retry-After"])
        assert 1 <= retry_after <= 60 and body["retryAfter"] == retry_after
        # Another key of the same account has its own count.
        assert (await _get(http, keys[1])).status_code == 200


async def test_invalid_requests_count_too(limited_api: LocalApi, keys: list[str]):
    """Requests refused as invalid (400) or for an unknown route (404) use up the key's allowance too."""
    _wait_for_a_fresh_window()
    headers = {"Authorization": f"Bearer {keys[2]}"}
    async with httpx.AsyncClient(base_url=limited_api.url, timeout=30) as http:
        for _ in range(LIMIT):
            answer = await http.get("/api/chargers", params={"limit": "zero"}, headers=headers)
            assert answer.status_code == 400
        assert (await http.get("/api/chargers", headers=headers)).status_code == 429
