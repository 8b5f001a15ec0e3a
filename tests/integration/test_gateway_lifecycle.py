"""Stopping a gateway (what SIGTERM does): chargers told to reconnect elsewhere, nothing left behind."""

from __future__ import annotations

import asyncio

import pytest
from fixtures.gateway_fixtures import Behaviour, charger_session, charger_url, wait_held
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from evreserve.aws import ClientError
from evreserve.models import ConnectionState, OcppVersion, OutcomeKind

pytestmark = pytest.mark.integration


async def test_stop_closes_chargers_with_service_restart(start_gateway, seed_charger, registry):
    """Stopping closes charger sockets with 1012 and records them disconnected."""
    gateway = await start_gateway()
    charger = seed_charger()
    async with connect(charger_url(gateway, charger.ocpp_id), subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
        await wait_held(gateway, charger, registry)
        await gateway.stop()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1012
    assert registry.get_charger(charger.id).connection.state is ConnectionState.DISCONNECTED


async def test_stop_deletes_the_instance_queue(start_gateway, gateway_clients):
    """The instance's queue is gone after a stop."""
    gateway = await start_gateway()
    await gateway.stop()
    with pytest.raises(ClientError):
        gateway_clients.sqs.get_queue_attributes(QueueUrl=gateway.queue_url, AttributeNames=["All"])


async def test_command_in_flight_at_stop_ends_definitively(start_gateway, seed_charger, registry, commands):
    """A command still waiting on a silent charger when the gateway stops ends offline, not unanswered."""
    gateway = await start_gateway(gateway_drain_timeout_s=0.2)
    charger = seed_charger()
    async with charger_session(gateway, charger, OcppVersion.V16, Behaviour(mode="silent")):
        await wait_held(gateway, charger, registry)
        pending = asyncio.create_task(commands.execute(commands.command(charger, OcppVersion.V16), gateway.queue_url))
        await asyncio.sleep(0.5)
        await gateway.stop()
        outcome = await pending
    assert (outcome.kind, outcome.completed_by) == (OutcomeKind.OFFLINE, gateway.instance_id)


async def test_stopping_gateway_refuses_new_chargers(start_gateway, seed_charger):
    """Once stopped, the gateway no longer accepts connections."""
    gateway = await start_gateway()
    port = gateway.port
    await gateway.stop()
    with pytest.raises(OSError):
        async with connect(f"ws://127.0.0.1:{port}/ocpp/x", subprotocols=["ocpp1.6"], open_timeout=2):  # type: ignore[list-item]
            pass
