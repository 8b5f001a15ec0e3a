"""The per-account rate limit over HTTP: an account's keys share one budget (issue defect 7).

A local API of its own with a generous per-key limit and a small per-account one; the
counts live in DynamoDB, across the function instances the local API runs.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fixtures.gateway_fixtures import PASSWORD, Behaviour, charger_session, wait_held

from devstack.local_api import LocalApi
from evreserve.models import OcppVersion
from evreserve_lambda.wiring import use_services

pytestmark = pytest.mark.integration

ACCOUNT_LIMIT = 4


@pytest.fixture(scope="module")
def keys(local_api: LocalApi, admin_api_key: str) -> list[str]:
    """Three keys of one fresh account, issued through the session's API (not counted here)."""
    admin = {"Authorization": f"Bearer {admin_api_key}"}
    with httpx.Client(base_url=local_api.url, timeout=30) as http:
        account = http.post("/api/admin/accounts", json={"name": "acct-rl"}, headers=admin).json()["data"]
        issued = []
        for name in ("a", "b", "c"):
            answer = http.post(f"/api/admin/accounts/{account['id']}/api-keys", json={"name": name}, headers=admin)
            issued.append(answer.json()["data"]["apiKey"])
        return issued


@pytest.fixture(scope="module")
def account_limited_api(keys: list[str]) -> Iterator[LocalApi]:
    environment = {"RATE_LIMIT_PER_MINUTE": "100", "RATE_LIMIT_PER_ACCOUNT_PER_MINUTE": str(ACCOUNT_LIMIT)}
    with LocalApi(port=0, environment=environment) as api:
        yield api


async def test_an_accounts_keys_share_one_budget(account_limited_api: LocalApi, keys: list[str]) -> None:
    """GIVEN 100/min per key and 4/min per account WHEN three keys of the account send 3 requests each
    THEN 4 pass in all, the rest get 429 RATE_LIMITED with Retry-After: more keys are no more budget."""
    if 60 - time.time() % 60 < 15:  # the whole test in one window
        await asyncio.sleep(60 - time.time() % 60 + 0.1)
    async with httpx.AsyncClient(base_url=account_limited_api.url, timeout=30) as http:
        answers = await asyncio.gather(
            *(http.get("/api/chargers", headers={"Authorization": f"Bearer {key}"}) for key in keys for _ in range(3))
        )
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] * ACCOUNT_LIMIT + [429] * (9 - ACCOUNT_LIMIT)
    for answer in answers:
        if answer.status_code == 429:
            assert answer.json()["code"] == "RATE_LIMITED" and int(answer.headers["Retry-After"]) >= 1


async def test_an_account_has_a_bounded_number_of_keys(local_api: LocalApi, admin_api_key: str) -> None:
    """MAX_API_KEYS_PER_ACCOUNT=2: a third key is 409 QUOTA_EXCEEDED; after a deletion one can be made again."""
    use_services(None)  # the functions read the limit when they build their services
    try:
        with LocalApi(port=0, environment={"MAX_API_KEYS_PER_ACCOUNT": "2"}) as api:
            admin = {"Authorization": f"Bearer {admin_api_key}"}
            async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
                account = (await http.post("/api/admin/accounts", json={"name": "quota"}, headers=admin)).json()
                path = f"/api/admin/accounts/{account['data']['id']}/api-keys"
                made = [await http.post(path, json={"name": f"k{n}"}, headers=admin) for n in range(3)]
                assert [answer.status_code for answer in made] == [201, 201, 409]
                assert made[2].json()["code"] == "QUOTA_EXCEEDED"
                key_id = made[0].json()["data"]["keyId"]
                assert (await http.delete(f"{path}/{key_id}", headers=admin)).status_code == 204
                assert (await http.post(path, json={"name": "again"}, headers=admin)).status_code == 201
    finally:
        use_services(None)


async def test_an_accounts_commands_in_flight_are_capped(
    admin_api_key: str, local_api: LocalApi, registry: Any, gateway: Any
) -> None:
    """ACCOUNT_COMMANDS_IN_FLIGHT=2: the account's third command within one command lifetime is 429
    TOO_MANY_COMMANDS with Retry-After, and is never sent; a plain retry of a sent one is not counted."""
    use_services(None)
    try:
        # The module's other API (a small account limit) is still up: its environment is the process's.
        environment = {"ACCOUNT_COMMANDS_IN_FLIGHT": "2", "RATE_LIMIT_PER_ACCOUNT_PER_MINUTE": "1000"}
        with LocalApi(port=0, environment=environment) as api:
            admin = {"Authorization": f"Bearer {admin_api_key}"}
            async with httpx.AsyncClient(base_url=api.url, timeout=40) as http:
                account = (await http.post("/api/admin/accounts", json={"name": "cmds"}, headers=admin)).json()
                path = f"/api/admin/accounts/{account['data']['id']}/api-keys"
                key = (await http.post(path, json={"name": "k"}, headers=admin)).json()["data"]["apiKey"]
                owner = {"Authorization": f"Bearer {key}"}
                body = {"ocppId": f"CMDS-{os.urandom(4).hex()}", "password": PASSWORD, "ports": [{"portNumber": 1}]}
                data = (await http.post("/api/chargers", json=body, headers=owner)).json()["data"]
                charger = registry.get_charger(data["id"])
                behaviour = Behaviour()
                async with charger_session(gateway, charger, OcppVersion.V16, behaviour):
                    await wait_held(gateway, charger, registry)
                    expiry = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
                    answers = []
                    for reservation_id in (1, 1, 2, 3):  # the second is a plain retry of the first
                        reserve = {"portId": data["ports"][0]["id"], "expiryDate": expiry, "idTag": "T"}
                        answers.append(
                            await http.post(
                                "/api/ocpp/reservations",
                                json=reserve | {"reservationId": reservation_id},
                                headers=owner,
                            )
                        )
                assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
                assert answers[3].json()["code"] == "TOO_MANY_COMMANDS"
                assert int(answers[3].headers["Retry-After"]) >= 1
                assert len(behaviour.received) == 2
    finally:
        use_services(None)
