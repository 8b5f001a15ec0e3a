"""A live session ends when its credentials stop standing, whichever instance holds it.

Real gateways on 127.0.0.1:0, the local DynamoDB and SQS servers, the chargers' real
WebSocket clients; the password change and the deletion go through the chargers'
service as the API function runs it (issue "Every answer true under faults", defect 5).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fixtures.gateway_fixtures import charger_session, wait_held, wait_until

from evreserve.models import ApiKey, utcnow
from evreserve.requests import ChargerChanges
from evreserve.services.bootstrap import build_services
from evreserve.services.principal import Principal
from evreserve.settings import CoreSettings

pytestmark = pytest.mark.integration


async def closed(charge_point: Any, limit_s: float = 5.0) -> int:
    """The close code of a test charger's socket, once the gateway closed it."""
    connection = charge_point._connection
    async with asyncio.timeout(limit_s):
        await connection.wait_closed()
    code: int = connection.close_code
    return code


def owner_of(account_id: int) -> Principal:
    return Principal.of(ApiKey(key_id="k", key_hash="h", name="t", account_id=account_id, created_at=utcnow()))


async def test_a_newer_connection_on_another_instance_closes_the_older_socket(
    start_gateway, seed_charger, registry
) -> None:
    """The same identity connects to instance B while A holds it: A closes the older socket (1008)
    within seconds, B keeps the new one (no silent second session)."""
    first, second = await start_gateway(), await start_gateway()
    charger = seed_charger()
    async with charger_session(first, charger) as old:
        await wait_held(first, charger, registry)
        async with charger_session(second, charger) as new:
            await wait_held(second, charger, registry)
            assert await closed(old) == 1008
            await wait_until(lambda: not first.holds(charger.ocpp_id), 5, what="A to let the old session go")
            assert new._connection.close_code is None
            assert second.holds(charger.ocpp_id)


@pytest.mark.parametrize("change", ["password", "delete"])
async def test_a_password_change_or_deletion_closes_the_live_session(
    start_gateway, seed_charger, registry, local_aws, change
) -> None:
    """Changing the charger's password, or deleting it, through the service closes its live session
    (1008) within seconds: whoever holds the old credentials is not kept on."""
    await start_gateway()  # another instance, which must not matter
    holder = await start_gateway()
    charger = seed_charger()
    services = build_services(CoreSettings())  # type: ignore[call-arg]
    owner = owner_of(charger.account_id)
    async with charger_session(holder, charger) as session:
        await wait_held(holder, charger, registry)
        if change == "password":
            changes = ChargerChanges(given=frozenset({"password"}), password="a-brand-new-password-42")
            await asyncio.to_thread(services.chargers.update, owner, charger.id, changes)
        else:
            await asyncio.to_thread(services.chargers.delete, owner, charger.id)
        assert await closed(session) == 1008
        await wait_until(lambda: not holder.holds(charger.ocpp_id), 5, what="the session to be let go")
