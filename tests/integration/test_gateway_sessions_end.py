"""A live session ends when its credentials stop standing, whichever instance holds it; a busy table is no crash.

Real gateways on 127.0.0.1:0, the local DynamoDB and SQS servers, the chargers' real
WebSocket clients; the password change and the deletion go through the chargers'
service as the API function runs it (issue "Every answer true under faults", defect 5).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from fixtures.aws_faults import answer_with
from fixtures.gateway_fixtures import Behaviour, charger_session, wait_held, wait_until

from evreserve.aws import dynamodb_client
from evreserve.errors import DependencyUnavailable, IdempotencyConflict
from evreserve.models import ApiKey, OcppVersion, utcnow
from evreserve.requests import ChargerChanges, NewCharger, NewPort, ReserveRequest
from evreserve.services.bootstrap import build_services
from evreserve.services.principal import Principal
from evreserve.settings import CoreSettings
from evreserve.storage.base import CONFLICT_RETRIES_S
from evreserve.storage.registry import RegistryStore
from evreserve_gateway import GatewaySettings
from evreserve_lambda.http import status_of

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


@pytest.mark.parametrize("aws_client", ["awsjson", "botocore"])
async def test_a_transaction_conflict_on_registration_is_try_again_later(
    start_gateway, seed_charger, registry, aws_client: str
):
    """Defect 6: DynamoDB answers the connection's registration with TransactionConflictException (the
    charger's item is in a transaction): the charger is asked to come back (1013), not crashed with 1011;
    its next attempt connects. With either AWS client (AWS_CLIENT). The registration is not written
    again on the spot (``LiveChargerState.register_connection``)."""
    dynamodb = dynamodb_client(GatewaySettings(aws_read_timeout_s=5.0, aws_client=aws_client))
    answered = answer_with(dynamodb, "UpdateItem", "TransactionConflictException", times=1)
    gateway = await start_gateway(inject=lambda deps: replace(deps, registry=RegistryStore(dynamodb, registry.table)))
    charger = seed_charger()
    async with charger_session(gateway, charger) as first:
        assert await closed(first) == 1013
    assert answered == [1]
    async with charger_session(gateway, charger):
        await wait_held(gateway, charger, registry)


@pytest.mark.parametrize("aws_client", ["awsjson", "botocore"])
def test_a_cancelled_registry_transaction_is_503_not_500(local_aws, aws_client: str) -> None:
    """Defect 6: registering a charger (one transaction) that DynamoDB cancels for a conflicting
    transaction is SERVICE_UNAVAILABLE (503, retry), not an unhandled error (500). With either AWS client."""
    dynamodb = dynamodb_client(CoreSettings(aws_client=aws_client))  # type: ignore[call-arg]
    answer_with(dynamodb, "TransactWriteItems", "TransactionCanceledException", times=1)
    services = build_services(CoreSettings(), dynamodb=dynamodb)  # type: ignore[call-arg]
    owner = owner_of(424242)
    request = NewCharger(ocpp_id=f"TX-{os.urandom(4).hex()}", ports=(NewPort(port_number=1),), password="p" * 20)
    with pytest.raises(DependencyUnavailable) as refused:
        services.chargers.register(owner, request)
    assert status_of(refused.value) == 503
    services.chargers.register(owner, request)  # the retry goes through


async def test_an_old_refusal_is_not_replayed_to_a_new_request(start_gateway, seed_charger, registry) -> None:
    """Defect 8: an identical reserve body got Occupied; retried at once it replays that answer (one
    ReserveNow), but the same body a minute later asks the charger again, which may be free now."""
    gateway = await start_gateway()
    charger = seed_charger()
    now = [utcnow()]
    services = build_services(CoreSettings(), clock=lambda: now[0])  # type: ignore[call-arg]
    owner = owner_of(charger.account_id)
    request = ReserveRequest(
        port_id=charger.ports[0].id, expiry_date=now[0] + timedelta(hours=2), id_tag="RFID001", reservation_id=77
    )
    behaviour = Behaviour(status="Occupied")
    async with charger_session(gateway, charger, OcppVersion.V16, behaviour):
        await wait_held(gateway, charger, registry)
        first = await asyncio.to_thread(services.reservations.reserve, owner, request)
        retried = await asyncio.to_thread(services.reservations.reserve, owner, request)
        assert (first, retried, len(behaviour.received)) == ("Occupied", "Occupied", 1)
        behaviour.status = "Accepted"  # the connector is free now
        now[0] += timedelta(seconds=61)
        later = await asyncio.to_thread(services.reservations.reserve, owner, request)
    assert (later, len(behaviour.received)) == ("Accepted", 2)


async def test_an_idempotency_key_replays_its_answer_for_a_day(start_gateway, seed_charger, registry) -> None:
    """With an Idempotency-Key the first answer is replayed for 24 h without a second ReserveNow, even
    after the 30 s that replay a plain retry; the same key with another body is IDEMPOTENCY_CONFLICT."""
    gateway = await start_gateway()
    charger = seed_charger()
    now = [utcnow()]
    services = build_services(CoreSettings(), clock=lambda: now[0])  # type: ignore[call-arg]
    owner = owner_of(charger.account_id)
    request = ReserveRequest(
        port_id=charger.ports[0].id, expiry_date=now[0] + timedelta(hours=30), id_tag="RFID001", reservation_id=78
    )
    behaviour = Behaviour(status="Occupied")
    async with charger_session(gateway, charger, OcppVersion.V16, behaviour):
        await wait_held(gateway, charger, registry)
        first = await asyncio.to_thread(services.reservations.reserve, owner, request, "order-4711")
        behaviour.status = "Accepted"
        now[0] += timedelta(hours=23)
        replayed = await asyncio.to_thread(services.reservations.reserve, owner, request, "order-4711")
        assert (first, replayed, len(behaviour.received)) == ("Occupied", "Occupied", 1)
        changed = ReserveRequest(
            port_id=request.port_id, expiry_date=request.expiry_date, id_tag="RFID002", reservation_id=78
        )
        with pytest.raises(IdempotencyConflict):
            await asyncio.to_thread(services.reservations.reserve, owner, changed, "order-4711")
        assert len(behaviour.received) == 1


@pytest.mark.parametrize("conflicts", [len(CONFLICT_RETRIES_S), len(CONFLICT_RETRIES_S) + 1])
async def test_a_command_meeting_another_transaction_runs_again(
    start_gateway, seed_charger, registry, conflicts: int
) -> None:
    """Commands of one account all count on the account's rate items, and DynamoDB cancels a transaction
    that meets another one on an item (TransactionConflict). The command's transaction runs again: after as
    many conflicts as it has pauses the reservation is Accepted; one more is 503, and nothing was sent."""
    gateway = await start_gateway()
    charger = seed_charger()
    dynamodb = dynamodb_client(CoreSettings())  # type: ignore[call-arg]
    reasons = [{"Code": "None"}, {"Code": "None"}, {"Code": "TransactionConflict"}, {"Code": "None"}]
    answered = answer_with(
        dynamodb, "TransactWriteItems", "TransactionCanceledException", conflicts, CancellationReasons=reasons
    )
    services = build_services(CoreSettings(), dynamodb=dynamodb)  # type: ignore[call-arg]
    owner = owner_of(charger.account_id)
    request = ReserveRequest(
        port_id=charger.ports[0].id,
        expiry_date=utcnow() + timedelta(hours=1),
        id_tag="RFID001",
        reservation_id=charger.id * 100 + 90,
    )
    behaviour = Behaviour()
    async with charger_session(gateway, charger, OcppVersion.V16, behaviour):
        await wait_held(gateway, charger, registry)
        if conflicts <= len(CONFLICT_RETRIES_S):
            assert await asyncio.to_thread(services.reservations.reserve, owner, request) == "Accepted"
            assert len(behaviour.received) == 1
        else:
            with pytest.raises(DependencyUnavailable) as refused:
                await asyncio.to_thread(services.reservations.reserve, owner, request)
            assert status_of(refused.value) == 503
            assert behaviour.received == []
    assert answered == [1] * conflicts
