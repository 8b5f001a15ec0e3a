"""Fixtures of the end-to-end suite (helpers in ``e2e_stack``).

* ``e2e_api`` (module): the local API with a 3 s charger deadline; ``account`` (module):
  an operator account and its key, made through the admin API; ``api``: its client.
* ``stack`` (module): ``GATEWAYS`` gateway processes (default 1) behind the balancer.
* ``chargers``: registers a charger through the API and connects a simulated one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from e2e_stack import (
    ANSWER_BOUND_S,
    COMMAND_GRACE_S,
    COMMAND_TIMEOUT_S,
    PASSWORD,
    Account,
    Api,
    Charger,
    ChargerFactory,
    Stack,
    register,
    running_stack,
    unique,
)

from devstack.local_api import LocalApi
from evreserve_lambda.app import use_services
from simulator import Behaviour, SimulatedCharger


@pytest.fixture(scope="module")
def e2e_api(request: pytest.FixtureRequest, local_aws: Any) -> Iterator[LocalApi]:
    """The local API with a 3 s charger deadline (+1 s grace) instead of 20 s (+2 s).

    A module may set ``DEADLINE_S`` for a longer one. Per module, not per package:
    tests/e2e is no package, so "package" would last the whole session and lend its
    settings to the API of every later test.
    """
    # The functions build their services once per process, in the shared layer module
    # (as each Lambda sandbox does once); dropping them makes this API's settings apply
    # and, afterwards, lets another API in this process build its own again.
    use_services(None)
    environment = {
        "COMMAND_TIMEOUT_S": str(getattr(request.module, "DEADLINE_S", COMMAND_TIMEOUT_S)),
        "COMMAND_GRACE_S": str(COMMAND_GRACE_S),
        # One key per module sends far more than a partner's 200 requests a minute, and its
        # account more commands at once than the default cap; those limits are not what this
        # suite is about (tests/integration/test_api_account_limit.py is).
        "RATE_LIMIT_PER_MINUTE": "100000",
        "RATE_LIMIT_PER_ACCOUNT_PER_MINUTE": "100000",
        "ACCOUNT_COMMANDS_IN_FLIGHT": "100000",
    }
    with LocalApi(port=0, environment=environment) as api:
        yield api
    use_services(None)


@pytest.fixture(scope="module")
def account(e2e_api: LocalApi, admin_api_key: str) -> Account:
    """A fresh operator account and its unlimited key, made through the admin endpoints."""
    admin = {"Authorization": f"Bearer {admin_api_key}"}
    with httpx.Client(base_url=e2e_api.url, timeout=30) as http:
        created = http.post("/api/admin/accounts", json={"name": unique("e2e")}, headers=admin)
        assert created.status_code == 201, created.text
        account_id = created.json()["data"]["id"]
        issued = http.post(f"/api/admin/accounts/{account_id}/api-keys", json={"name": "e2e"}, headers=admin)
        assert issued.status_code == 201, issued.text
        return Account(account_id, issued.json()["data"]["apiKey"])


@pytest.fixture
async def api(request: pytest.FixtureRequest, e2e_api: LocalApi, account: Account) -> AsyncIterator[Api]:
    """The account's API client; no request may take longer than the module's deadline allows."""
    deadline = getattr(request.module, "DEADLINE_S", COMMAND_TIMEOUT_S)
    # Room for well over 100 requests in flight at once (httpx's default pool is 100).
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=50)
    timeout = ANSWER_BOUND_S - COMMAND_TIMEOUT_S + deadline + 5
    async with httpx.AsyncClient(base_url=e2e_api.url, timeout=timeout, limits=limits) as http:
        yield Api(http, account.key)


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest, e2e_api: LocalApi) -> Iterator[Stack]:
    """The module's stack: ``GATEWAYS`` (default 1) instances behind the balancer."""
    instances = getattr(request.module, "GATEWAYS", 1)
    with running_stack(instances, unique("gw")) as running:
        yield running


@pytest.fixture
async def chargers(api: Api, stack: Stack) -> AsyncIterator[ChargerFactory]:
    """Registers a charger through the API and connects a simulated one through the balancer.

    ``registered_ports`` (default ``ports``) lets the registry know ports the charger lacks.
    Everything started is stopped at the end of the test.
    """
    started: list[SimulatedCharger] = []

    async def make(
        version: str = "1.6",
        *,
        ports: int = 2,
        registered_ports: int | None = None,
        behaviour: Behaviour | None = None,
        port_behaviour: dict[int, Behaviour] | None = None,
        connect: bool = True,
    ) -> Charger:
        data = await register(api, version, registered_ports or ports)
        sim = SimulatedCharger(
            data["ocppId"],
            stack.ws_url,
            PASSWORD,
            version,
            ports=ports,
            behaviour=behaviour,
            port_behaviour=port_behaviour,
            reconnect_delay=(0.05, 0.2),
            open_timeout=5,
        )
        if connect:
            started.append(sim)
            await sim.start()
            await sim.wait_connected(timeout=15)
        port_ids = {p["portNumber"]: p["id"] for p in data["ports"]}
        return Charger(data["id"], data["ocppId"], port_ids, sim, data)

    yield make
    await asyncio.gather(*(sim.stop() for sim in started))
