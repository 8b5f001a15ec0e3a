"""Two gateway instances behind the balancer: chargers spread, commands routed, SIGTERM while busy.

Which instance holds a charger is read from each instance's ``GET /health`` (how many it
holds) and its log (which ones); everything else is HTTP answers and what the simulated
chargers received.
"""

from __future__ import annotations

import asyncio

import pytest
from e2e_stack import (
    ANSWER_BOUND_S,
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

GATEWAYS = 2
#: What a reserve request may answer at all (docs/api.md) while an instance goes away.
DOCUMENTED = {
    (200, "Accepted"),
    (409, "CHARGER_OFFLINE"),
    (503, "SERVICE_UNAVAILABLE"),
    (504, "CHARGER_TIMEOUT"),
}


async def test_chargers_spread_and_commands_reach_their_instance(api: Api, chargers: ChargerFactory, stack: Stack):
    """Four chargers land on both instances; each one's ReserveNow is executed by the instance holding it."""
    fleet = [await chargers(version) for version in ("1.6", "2.0.1", "1.6", "2.0.1")]
    placed = await placement(stack, {cp.ocpp_id for cp in fleet}, stack.gateways)
    assert all(len(ids) == 2 for ids in placed.values()), placed
    for cp in fleet:
        assert (await api.charger(cp.id))["connectionStatus"]["status"] == "Connected"

    answers = await asyncio.gather(*(api.reserve(cp.port_ids[1], next_id()) for cp in fleet))
    assert [answer_of(a) for a in answers] == [(200, "Accepted")] * 4
    assert all(cp.sim.received["ReserveNow"] == 1 for cp in fleet)
    for gateway in stack.gateways:
        executed = {e["charger"] for e in stack.completed_commands(gateway) if e["action"] == "ReserveNow"}
        assert executed == placed[gateway.instance_id]


async def test_sigterm_with_commands_in_flight(api: Api, chargers: ChargerFactory, stack: Stack):
    """SIGTERM mid-command: drained answers stand, cut ones are 409, chargers move over, later commands work."""
    fleet = [await chargers(version) for version in ("1.6", "2.0.1", "1.6", "2.0.1")]
    placed = await placement(stack, {cp.ocpp_id for cp in fleet}, stack.gateways)
    victim, survivor = stack.gateways
    on_victim = [cp for cp in fleet if cp.ocpp_id in placed[victim.instance_id]]
    on_survivor = [cp for cp in fleet if cp.ocpp_id in placed[survivor.instance_id]]
    assert len(on_victim) == 2 and len(on_survivor) == 2
    slow, silent = on_victim
    # Answers within the 1.5 s drain / never: the drain lets the first finish and cuts the second.
    slow.sim.behaviour = Behaviour(answer_delay=0.5)
    silent.sim.behaviour = Behaviour(never_answer=True)
    for cp in on_survivor:
        cp.sim.behaviour = Behaviour(answer_delay=0.5)

    rids = {cp.ocpp_id: next_id() for cp in fleet}
    requests = {cp.ocpp_id: asyncio.create_task(api.reserve(cp.port_ids[1], rids[cp.ocpp_id])) for cp in fleet}
    for cp in fleet:  # every command has reached its charger: in flight at both instances
        await cp.sim.wait_for(lambda c: c.received["ReserveNow"] == 1, timeout=5)
    stopping = asyncio.create_task(asyncio.to_thread(victim.stop))
    # A request for a charger of the stopping instance, sent during the shutdown.
    during = asyncio.create_task(api.reserve(slow.port_ids[2], next_id()))
    async with asyncio.timeout(ANSWER_BOUND_S):
        answers = {ocpp_id: answer_of(await task) for ocpp_id, task in requests.items()}
        during_answer = answer_of(await during)
        await stopping

    assert answers[slow.ocpp_id] == (200, "Accepted")
    assert answers[silent.ocpp_id] == (409, "CHARGER_OFFLINE")
    assert all(answers[cp.ocpp_id] == (200, "Accepted") for cp in on_survivor)
    assert during_answer in DOCUMENTED
    assert victim.process is not None and victim.process.returncode == 0
    assert (await api.reservation(rids[silent.ocpp_id]))["failureCode"] == "CHARGER_OFFLINE"

    # Closed with 1012, the victim's chargers reconnect through the balancer to the survivor.
    for cp in on_victim:
        await cp.sim.wait_for(lambda c: c.connect_count >= 2 and c.connected, timeout=10)
        assert "1012" in (cp.sim.last_disconnect or "")
    moved = await placement(stack, {cp.ocpp_id for cp in fleet}, [survivor])
    assert moved[survivor.instance_id] == {cp.ocpp_id for cp in fleet}
    for cp in fleet:
        await eventually(
            lambda cp=cp: api.charger(cp.id),
            lambda c: c["connectionStatus"]["status"] == "Connected",
            what=f"{cp.ocpp_id} Connected",
        )

    # Later commands succeed; the unanswered request, retried, is sent again and accepted.
    for cp in fleet:
        cp.sim.behaviour = Behaviour()
    retried = await api.reserve(silent.port_ids[1], rids[silent.ocpp_id])
    assert answer_of(retried) == (200, "Accepted")
    later = await asyncio.gather(*(api.reserve(cp.port_ids[2], next_id()) for cp in fleet if cp is not slow))
    assert [answer_of(a) for a in later] == [(200, "Accepted")] * 3
    # Each charger saw each command at most once: no command was delivered twice.
    # (The request sent during the shutdown reached the charger only if it was answered.)
    assert slow.sim.received["ReserveNow"] == 1 + (during_answer[0] == 200)
    assert silent.sim.received["ReserveNow"] == 3
    assert all(cp.sim.received["ReserveNow"] == 2 for cp in on_survivor)
