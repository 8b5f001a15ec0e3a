"""Chargers that cannot give a plain answer: each gets its documented answer within its deadline.

Offline (409 CHARGER_OFFLINE), never answering (504 CHARGER_TIMEOUT after the stack's
3 s deadline plus 1 s grace), no reservation support (200 Rejected), leaving in the
middle of a command (409 CHARGER_OFFLINE at once), and a reservationId active on
another port (409 RESERVATION_ID_CONFLICT, nothing sent).
"""

from __future__ import annotations

import time

import pytest
from e2e_stack import COMMAND_GRACE_S, COMMAND_TIMEOUT_S, Api, ChargerFactory, answer_of, eventually, next_id

from simulator import Behaviour, NoReservationSupport

pytestmark = pytest.mark.e2e

VERSIONS = ["1.6", "2.0.1"]
#: Slack on a loaded 2-core machine for answers documented as immediate.
PROMPT_S = 2.0


@pytest.mark.parametrize("version", VERSIONS)
async def test_disconnected_charger_is_409_offline(api: Api, chargers: ChargerFactory, version: str):
    """A charger that connected and left shows Disconnected; reserve and cancel are 409 CHARGER_OFFLINE."""
    cp = await chargers(version)
    await cp.sim.stop()
    await eventually(
        lambda: api.charger(cp.id), lambda c: c["connectionStatus"]["status"] == "Disconnected", what="Disconnected"
    )
    rid = next_id()
    reserve = await api.reserve(cp.port_ids[1], rid)
    assert answer_of(reserve) == (409, "CHARGER_OFFLINE")
    assert answer_of(await api.cancel(cp.id, rid)) == (409, "CHARGER_OFFLINE")
    assert cp.sim.received["ReserveNow"] == 0


async def test_never_connected_charger_is_409_offline(api: Api, chargers: ChargerFactory):
    """A registered charger that never connected (connectionStatus null): 409 CHARGER_OFFLINE."""
    cp = await chargers("1.6", connect=False)
    assert (await api.charger(cp.id))["connectionStatus"] is None
    assert answer_of(await api.reserve(cp.port_ids[1], next_id())) == (409, "CHARGER_OFFLINE")


@pytest.mark.parametrize("version", VERSIONS)
async def test_silent_charger_is_504_within_deadline(api: Api, chargers: ChargerFactory, version: str):
    """A charger that never answers: 504 CHARGER_TIMEOUT between the deadline and deadline + grace; record Failed."""
    cp = await chargers(version, behaviour=Behaviour(never_answer=True))
    rid = next_id()
    started = time.monotonic()
    answer = await api.reserve(cp.port_ids[1], rid)
    elapsed = time.monotonic() - started
    assert answer_of(answer) == (504, "CHARGER_TIMEOUT")
    assert COMMAND_TIMEOUT_S - 0.5 <= elapsed < COMMAND_TIMEOUT_S + COMMAND_GRACE_S + PROMPT_S
    assert cp.sim.received["ReserveNow"] == 1
    record = await api.reservation(rid)
    assert (record["status"], record["active"], record["failureCode"]) == ("Failed", False, "CHARGER_TIMEOUT")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("code", list(NoReservationSupport))
async def test_charger_without_reservation_support_is_rejected(
    api: Api, chargers: ChargerFactory, version: str, code: NoReservationSupport
):
    """ReserveNow answered with CALLERROR NotImplemented / NotSupported: 200 Rejected."""
    cp = await chargers(version, behaviour=Behaviour(no_reservations=code))
    rid = next_id()
    assert answer_of(await api.reserve(cp.port_ids[1], rid)) == (200, "Rejected")
    assert cp.sim.received["ReserveNow"] == 1
    assert (await api.reservation(rid))["status"] == "Rejected"


@pytest.mark.parametrize("version", VERSIONS)
async def test_charger_leaving_mid_command_is_409_offline_at_once(api: Api, chargers: ChargerFactory, version: str):
    """The charger cuts its socket on ReserveNow: 409 CHARGER_OFFLINE before the deadline; a retry is sent anew."""
    cp = await chargers(version, behaviour=Behaviour(drop_on_reserve=True))
    rid = next_id()
    started = time.monotonic()
    answer = await api.reserve(cp.port_ids[1], rid)
    assert answer_of(answer) == (409, "CHARGER_OFFLINE")
    assert time.monotonic() - started < COMMAND_TIMEOUT_S
    assert cp.sim.received["ReserveNow"] == 1
    record = await api.reservation(rid)
    assert (record["status"], record["failureCode"]) == ("Failed", "CHARGER_OFFLINE")
    # Back online, the same request is sent again (the first got no answer) and accepted.
    cp.sim.behaviour = Behaviour()
    await cp.sim.wait_for(lambda c: c.connect_count >= 2, timeout=10)
    assert answer_of(await api.reserve(cp.port_ids[1], rid)) == (200, "Accepted")
    assert cp.sim.received["ReserveNow"] == 2


async def test_reservation_id_active_on_another_port_is_409(api: Api, chargers: ChargerFactory):
    """A reservationId accepted on port 1, asked for port 2: 409 RESERVATION_ID_CONFLICT, no second ReserveNow."""
    cp = await chargers("2.0.1")
    rid = next_id()
    assert answer_of(await api.reserve(cp.port_ids[1], rid)) == (200, "Accepted")
    assert answer_of(await api.reserve(cp.port_ids[2], rid)) == (409, "RESERVATION_ID_CONFLICT")
    assert cp.sim.received["ReserveNow"] == 1
