"""The per-key rate limit over HTTP, on a local API of its own with a limit of a few requests.

The count lives in DynamoDB (RateLimitTable), so it holds across the function instances
the local API runs concurrent requests on, as it must across Lambda sandboxes.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fixtures.gateway_fixtures import Behaviour, charger_session, wait_held

from devstack.local_api import LocalApi
from evreserve.models import OcppVersion

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


async def _a_fresh_window(needed_s: float) -> None:
    """``_wait_for_a_fresh_window`` without blocking the loop (a gateway may run on it)."""
    if 60 - time.time() % 60 < needed_s:
        await asyncio.sleep(60 - time.time() % 60 + 0.1)


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


# -- the routes that send a command: the count rides the command's transaction ----------


@pytest.fixture
def reserving(local_api: LocalApi, admin_api_key: str) -> tuple[int, str]:
    """A fresh account and one key of it (issued through the session's API, not counted here)."""
    admin = {"Authorization": f"Bearer {admin_api_key}"}
    with httpx.Client(base_url=local_api.url, timeout=30, headers=admin) as http:
        account = http.post("/api/admin/accounts", json={"name": f"rl-{secrets.token_hex(3)}"}).json()["data"]
        key = http.post(f"/api/admin/accounts/{account['id']}/api-keys", json={"name": "k"}).json()["data"]["apiKey"]
    return account["id"], key


def _reserve(port_id: int, reservation_id: int) -> dict[str, Any]:
    expiry = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    return {"portId": port_id, "expiryDate": expiry, "idTag": "RFID-RL", "reservationId": reservation_id}


async def test_a_reservation_over_the_limit_reaches_neither_the_charger_nor_the_records(
    limited_api: LocalApi, reserving, start_gateway, seed_charger, registry, reservation_store
):
    """GIVEN a limit of 5/min WHEN a key reserves 6 times THEN 5 are Accepted, the 6th is 429 RATE_LIMITED,
    the charger got 5 ReserveNow and no record of the 6th exists: its count, carried by the command's
    transaction, failed that whole transaction."""
    account_id, key = reserving
    gateway = await start_gateway()
    charger = seed_charger(account_id=account_id)
    behaviour = Behaviour()
    base = 900_000 + secrets.randbelow(90_000) * 10
    async with (
        charger_session(gateway, charger, OcppVersion.V16, behaviour),
        httpx.AsyncClient(base_url=limited_api.url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as http,
    ):
        await wait_held(gateway, charger, registry)
        # The key is fresh: all that matters is that its requests fall in one window.
        await _a_fresh_window(10)
        answers = [
            await http.post("/api/ocpp/reservations", json=_reserve(charger.ports[0].id, base + n))
            for n in range(LIMIT + 1)
        ]
    assert [a.json() for a in answers[:LIMIT]] == [{"data": {"status": "Accepted"}}] * LIMIT
    assert answers[LIMIT].status_code == 429 and answers[LIMIT].json()["code"] == "RATE_LIMITED"
    assert 1 <= int(answers[LIMIT].headers["Retry-After"]) <= 60
    assert [action for action, _ in behaviour.received] == ["ReserveNow"] * LIMIT
    assert reservation_store.get(account_id, base + LIMIT) is None
    assert reservation_store.get(account_id, base + LIMIT - 1) is not None


async def test_reservation_requests_that_write_nothing_count_too(
    limited_api: LocalApi, reserving, start_gateway, seed_charger, registry
):
    """Invalid bodies (400), an unknown port (404) and a retry answered from its record count after they
    are answered, as every request does: past the limit, the next reservation is 429 and no command goes."""
    account_id, key = reserving
    gateway = await start_gateway()
    charger = seed_charger(account_id=account_id)
    behaviour = Behaviour()
    rid = 950_000 + secrets.randbelow(40_000)
    async with (
        charger_session(gateway, charger, OcppVersion.V16, behaviour),
        httpx.AsyncClient(base_url=limited_api.url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as http,
    ):
        await wait_held(gateway, charger, registry)
        await _a_fresh_window(10)
        first = _reserve(charger.ports[0].id, rid)
        statuses = [(await http.post("/api/ocpp/reservations", json=first)).status_code]
        statuses.append((await http.post("/api/ocpp/reservations", json=first)).status_code)  # the retry
        statuses.append((await http.post("/api/ocpp/reservations", json={"portId": "one"})).status_code)
        statuses.append((await http.post("/api/ocpp/reservations", content=b"not json")).status_code)
        statuses.append((await http.post("/api/ocpp/reservations", json=_reserve(2_000_000_000, rid + 1))).status_code)
        over = await http.post("/api/ocpp/reservations", json=_reserve(charger.ports[1].id, rid + 2))
    assert statuses == [200, 200, 400, 400, 404]
    assert over.status_code == 429 and over.json()["code"] == "RATE_LIMITED"
    assert [action for action, _ in behaviour.received] == ["ReserveNow"]
