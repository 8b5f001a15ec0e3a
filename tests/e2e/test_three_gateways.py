"""Three gateway instances behind the balancer: chargers spread, commands routed, SIGKILL while busy.

The SIGKILL test comes last: it leaves the module's stack with two instances.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from e2e_stack import (
    ANSWER_BOUND_S,
    COMMAND_GRACE_S,
    COMMAND_TIMEOUT_S,
    Api,
    ChargerFactory,
    Stack,
    answer_of,
    eventually,
    next_id,
    placement,
)

from simulator import Behaviour

pytestmark = pytest.mark.e2e

GATEWAYS = 3


async def test_chargers_spread_and_commands_reach_their_instance(api: Api, chargers: ChargerFactory, stack: Stack):
    """Six chargers land two on each instance; each one's ReserveNow is executed by the instance holding it."""
    fleet = [await chargers(version) for version in ("1.6", "2.0.1") * 3]
    placed = await placement(stack, {cp.ocpp_id for cp in fleet}, stack.gateways)
    assert sorted(len(ids) for ids in placed.values()) == [2, 2, 2], placed

    answers = await asyncio.gather(*(api.reserve(cp.port_ids[2], next_id()) for cp in fleet))
    assert [answer_of(a) for a in answers] == [(200, "Accepted")] * 6
    assert all(cp.sim.received["ReserveNow"] == 1 for cp in fleet)
    for gateway in stack.gateways:
        executed = {e["charger"] for e in stack.completed_commands(gateway) if e["action"] == "ReserveNow"}
        assert executed == placed[gateway.instance_id]


async def test_sigkill_with_commands_in_flight(api: Api, chargers: ChargerFactory, stack: Stack):
    """SIGKILL mid-command: its requests end 504 at the deadline, chargers reconnect to survivors, retries succeed."""
    fleet = [await chargers(version) for version in ("1.6", "2.0.1") * 3]
    placed = await placement(stack, {cp.ocpp_id for cp in fleet}, stack.gateways)
    victim, *survivors = stack.gateways
    doomed = [cp for cp in fleet if cp.ocpp_id in placed[victim.instance_id]]
    spared = [cp for cp in fleet if cp not in doomed]
    assert len(doomed) == 2
    for cp in doomed:  # still thinking when their instance dies
        cp.sim.behaviour = Behaviour(answer_delay=1.0)
    for cp in spared:
        cp.sim.behaviour = Behaviour(answer_delay=0.3)

    rids = {cp.ocpp_id: next_id() for cp in fleet}
    started = time.monotonic()
    requests = {cp.ocpp_id: asyncio.create_task(api.reserve(cp.port_ids[1], rids[cp.ocpp_id])) for cp in fleet}
    for cp in fleet:
        await cp.sim.wait_for(lambda c: c.received["ReserveNow"] == 1, timeout=5)
    await asyncio.to_thread(victim.kill)
    async with asyncio.timeout(ANSWER_BOUND_S):
        answers = {ocpp_id: (answer_of(await task), time.monotonic() - started) for ocpp_id, task in requests.items()}

    for cp in spared:
        assert answers[cp.ocpp_id][0] == (200, "Accepted")
    for cp in doomed:
        # The command died with the process: nobody answers, the API records the timeout.
        answer, took = answers[cp.ocpp_id]
        assert answer == (504, "CHARGER_TIMEOUT")
        assert took < COMMAND_TIMEOUT_S + COMMAND_GRACE_S + 2.0
        record = await api.reservation(rids[cp.ocpp_id])
        assert (record["status"], record["failureCode"]) == ("Failed", "CHARGER_TIMEOUT")

    # Their sockets died with the instance; they reconnect through the balancer to the survivors.
    for cp in doomed:
        await cp.sim.wait_for(lambda c: c.connect_count >= 2 and c.connected, timeout=10)
        assert "without a close frame" in (cp.sim.last_disconnect or "")
    moved = await placement(stack, {cp.ocpp_id for cp in fleet}, survivors)
    assert set().union(*moved.values()) == {cp.ocpp_id for cp in fleet}
    for cp in doomed:
        await eventually(
            lambda cp=cp: api.charger(cp.id),
            lambda c: c["connectionStatus"]["status"] == "Connected",
            what=f"{cp.ocpp_id} Connected",
        )

    # Retrying the unanswered requests sends them anew; new reservations work everywhere.
    for cp in fleet:
        cp.sim.behaviour = Behaviour()
    retried = await asyncio.gather(*(api.reserve(cp.port_ids[1], rids[cp.ocpp_id]) for cp in doomed))
    assert [answer_of(a) for a in retried] == [(200, "Accepted")] * 2
    later = await asyncio.gather(*(api.reserve(cp.port_ids[2], next_id()) for cp in fleet))
    assert [answer_of(a) for a in later] == [(200, "Accepted")] * 6
    # No command reached a charger twice: one per request.
    assert all(cp.sim.received["ReserveNow"] == 3 for cp in doomed)
    assert all(cp.sim.received["ReserveNow"] == 2 for cp in spared)
