"""Every row of the spec's two status tables, for OCPP 1.6 and 2.0.1 chargers.

The charger's answer comes from the simulated charger's real port state (reserved,
charging, faulted, unavailable, a connector it does not have, an unknown reservation)
and, separately, from a forced answer, so each status is shown to travel from the
charger's ReserveNow/CancelReservation answer to the HTTP response unchanged.
"""

from __future__ import annotations

import pytest
from e2e_stack import Api, ChargerFactory, answer_of, next_id

from simulator import Behaviour, PortStatus, ReserveStatus

pytestmark = pytest.mark.e2e

VERSIONS = ["1.6", "2.0.1"]


@pytest.mark.parametrize("version", VERSIONS)
async def test_reserve_accepted(api: Api, chargers: ChargerFactory, version: str):
    """An available port: 200 Accepted, the charger holds it, the port reports Reserved, the record is Accepted."""
    cp = await chargers(version)
    rid = next_id()
    answer = await api.reserve(cp.port_ids[1], rid, id_tag="RFID-ACC")
    assert answer_of(answer) == (200, "Accepted")
    assert answer.json() == {"data": {"status": "Accepted"}}
    assert cp.sim.reservations[rid].id_tag == "RFID-ACC"
    await api.wait_port_status(cp.id, 1, "Reserved")
    record = await api.reservation(rid)
    assert (record["status"], record["active"], record["portNumber"]) == ("Accepted", True, 1)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("state", [PortStatus.FAULTED, PortStatus.UNAVAILABLE])
async def test_reserve_on_faulted_or_unavailable_port(
    api: Api, chargers: ChargerFactory, version: str, state: PortStatus
):
    """A port the charger reports Faulted / Unavailable: 200 with that status, and an inactive record."""
    cp = await chargers(version)
    cp.sim.set_port_status(1, state)
    await api.wait_port_status(cp.id, 1, state.value)
    rid = next_id()
    assert answer_of(await api.reserve(cp.port_ids[1], rid)) == (200, state.value)
    assert rid not in cp.sim.reservations
    record = await api.reservation(rid)
    assert (record["status"], record["active"]) == (state.value, False)


@pytest.mark.parametrize("version", VERSIONS)
async def test_reserve_on_port_in_use(api: Api, chargers: ChargerFactory, version: str):
    """A port with a transaction running: 200 Occupied."""
    cp = await chargers(version)
    await cp.sim.start_transaction(1, "RFID-DRIVER")
    rid = next_id()
    assert answer_of(await api.reserve(cp.port_ids[1], rid)) == (200, "Occupied")
    assert (await api.reservation(rid))["status"] == "Occupied"


@pytest.mark.parametrize("version", VERSIONS)
async def test_reserve_on_port_reserved_for_another(api: Api, chargers: ChargerFactory, version: str):
    """A port already reserved under another reservationId: 200 Occupied; the first reservation stands."""
    cp = await chargers(version)
    first, second = next_id(), next_id()
    assert answer_of(await api.reserve(cp.port_ids[1], first, id_tag="A")) == (200, "Accepted")
    assert answer_of(await api.reserve(cp.port_ids[1], second, id_tag="B")) == (200, "Occupied")
    assert set(cp.sim.reservations) == {first}
    assert (await api.reservation(first))["status"] == "Accepted"


@pytest.mark.parametrize("version", VERSIONS)
async def test_reserve_on_connector_the_charger_lacks(api: Api, chargers: ChargerFactory, version: str):
    """A port registered in the API but unknown to the charger: 200 Rejected."""
    cp = await chargers(version, ports=2, registered_ports=3)
    rid = next_id()
    assert answer_of(await api.reserve(cp.port_ids[3], rid)) == (200, "Rejected")
    assert cp.sim.received["ReserveNow"] == 1 and not cp.sim.reservations


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("status", list(ReserveStatus))
async def test_reserve_relays_the_chargers_answer(
    api: Api, chargers: ChargerFactory, version: str, status: ReserveStatus
):
    """Whatever ReserveNow status the charger answers is the response's data.status and the record's status."""
    cp = await chargers(version, behaviour=Behaviour(reserve_answer=status))
    rid = next_id()
    assert answer_of(await api.reserve(cp.port_ids[2], rid)) == (200, status.value)
    record = await api.reservation(rid)
    assert (record["status"], record["active"]) == (status.value, status is ReserveStatus.ACCEPTED)


@pytest.mark.parametrize("version", VERSIONS)
async def test_cancel_accepted(api: Api, chargers: ChargerFactory, version: str):
    """Cancelling a held reservation: 200 Accepted, the port reports Available again, the record is Cancelled."""
    cp = await chargers(version)
    rid = next_id()
    assert answer_of(await api.reserve(cp.port_ids[1], rid)) == (200, "Accepted")
    await api.wait_port_status(cp.id, 1, "Reserved")
    answer = await api.cancel(cp.id, rid)
    assert answer.json() == {"data": {"status": "Accepted"}}
    assert rid not in cp.sim.reservations
    await api.wait_port_status(cp.id, 1, "Available")
    record = await api.reservation(rid)
    assert (record["status"], record["active"]) == ("Cancelled", False)


@pytest.mark.parametrize("version", VERSIONS)
async def test_cancel_rejected_for_unknown_reservation(api: Api, chargers: ChargerFactory, version: str):
    """Cancelling a reservationId the charger does not hold: 200 Rejected."""
    cp = await chargers(version)
    answer = await api.cancel(cp.id, next_id())
    assert answer.json() == {"data": {"status": "Rejected"}}
    assert cp.sim.received["CancelReservation"] == 1
