"""How an accepted reservation ends, as GET /api/ocpp/reservations lists it afterwards.

Used by a transaction, expired, cancelled, removed by the charger: each is done at the
simulated charger (or through the API for the cancel) and read back only over HTTP.
"""

from __future__ import annotations

import pytest
from e2e_stack import Api, ChargerFactory, answer_of, next_id

from simulator import Behaviour, PortStatus

pytestmark = pytest.mark.e2e

VERSIONS = ["1.6", "2.0.1"]


@pytest.mark.parametrize("version", VERSIONS)
async def test_reservation_used_by_a_transaction(api: Api, chargers: ChargerFactory, version: str):
    """The reserved idTag starts charging on the port: the transaction names the reservation, which lists as Used."""
    cp = await chargers(version)
    rid = next_id()
    assert answer_of(await api.reserve(cp.port_ids[1], rid, id_tag="RFID-USE")) == (200, "Accepted")
    tx = await cp.sim.start_transaction(1, "RFID-USE")
    assert tx.reservation_id == rid
    record = await api.wait_listed(cp.id, rid, "Used")
    assert record["active"] is False and record["endedAt"] is not None


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_member_of_the_reservations_group_uses_it_and_a_stranger_or_a_revoked_member_cannot(
    api: Api, chargers: ChargerFactory, version: str
):
    """Access IDs over HTTP: a reservation for one driver of a fleet; a stranger and a revoked member of
    the fleet are turned away by the charger, another member starts on the port and uses it up."""
    cp = await chargers(version)
    fleet, rid = f"FLEET-{next_id()}", next_id()
    for tag, status in ((f"M{rid}", "Authorized"), (f"X{rid}", "Revoked")):
        body = {"ocppIdTag": tag, "type": "RFID", "parentIdTag": fleet, "authorizationStatus": status}
        created = await api.http.post("/api/access-ids", json=body, headers=api.headers)
        assert created.status_code == 201, created.text
    assert answer_of(await api.reserve(cp.port_ids[1], rid, id_tag=f"O{rid}", parentIdTag=fleet)) == (200, "Accepted")
    with pytest.raises(Exception, match="reserved for another"):
        await cp.sim.start_transaction(1, f"S{rid}")
    with pytest.raises(Exception, match="Blocked"):
        await cp.sim.start_transaction(1, f"X{rid}")
    assert (await api.reservation(rid))["status"] == "Accepted"
    tx = await cp.sim.start_transaction(1, f"m{rid}")  # idTags compare without regard to case
    assert tx.reservation_id == rid
    record = await api.wait_listed(cp.id, rid, "Used")
    assert record["active"] is False


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_whole_charger_reservation_lands_on_the_port_the_driver_uses(
    api: Api, chargers: ChargerFactory, version: str
):
    """chargerId instead of portId: the charger accepts a reservation of itself as a whole (1.6 connector 0,
    2.0.1 without an EVSE), the record lists with portId null, and the driver's transaction on port 2 uses it
    up and gives it that port."""
    unspecific = Behaviour(reserve_connector_zero=True, non_evse_specific=True)
    cp = await chargers(version, behaviour=unspecific)
    rid = next_id()
    assert answer_of(await api.reserve(None, rid, id_tag="RFID-ANY", chargerId=cp.id)) == (200, "Accepted")
    assert (await api.reservation(rid))["portId"] is None and set(cp.sim.reservations) == {rid}
    tx = await cp.sim.start_transaction(2, "RFID-ANY")
    assert tx.reservation_id == rid
    record = await api.wait_listed(cp.id, rid, "Used")
    assert (record["portId"], record["portNumber"]) == (cp.port_ids[2], 2)


@pytest.mark.parametrize("version", VERSIONS)
async def test_reservation_expires(api: Api, chargers: ChargerFactory, version: str):
    """A reservation reaching its expiryDate lists as Expired, inactive, and the charger frees the port."""
    cp = await chargers(version)
    rid = next_id()
    assert answer_of(await api.reserve(cp.port_ids[1], rid, expires_in_s=2)) == (200, "Accepted")
    await api.wait_port_status(cp.id, 1, "Reserved")
    assert (await api.listed(cp.id, rid) or {}).get("status") == "Accepted"
    record = await api.wait_listed(cp.id, rid, "Expired", timeout=8)
    assert record["active"] is False
    await api.wait_port_status(cp.id, 1, "Available")
    assert rid not in cp.sim.reservations
    if version == "2.0.1":  # 2.0.1 reports the expiry itself; 1.6 only frees the port
        await cp.sim.wait_for(lambda c: c.sent["ReservationStatusUpdate"] == 1, timeout=5)


@pytest.mark.parametrize("version", VERSIONS)
async def test_reservation_cancelled(api: Api, chargers: ChargerFactory, version: str):
    """A reservation cancelled through the API lists as Cancelled, inactive."""
    cp = await chargers(version)
    rid = next_id()
    assert answer_of(await api.reserve(cp.port_ids[2], rid)) == (200, "Accepted")
    assert answer_of(await api.cancel(cp.id, rid)) == (200, "Accepted")
    record = await api.wait_listed(cp.id, rid, "Cancelled")
    assert record["active"] is False and record["portNumber"] == 2


@pytest.mark.parametrize("version", VERSIONS)
async def test_reservation_removed_when_port_faults(api: Api, chargers: ChargerFactory, version: str):
    """The reserved port goes Faulted at the charger: the reservation lists as Removed, inactive."""
    cp = await chargers(version)
    rid = next_id()
    assert answer_of(await api.reserve(cp.port_ids[1], rid)) == (200, "Accepted")
    await api.wait_listed(cp.id, rid, "Accepted")
    cp.sim.set_port_status(1, PortStatus.FAULTED)
    record = await api.wait_listed(cp.id, rid, "Removed")
    assert record["active"] is False
    await api.wait_port_status(cp.id, 1, "Faulted")


async def test_reservation_removed_by_the_charger_201(api: Api, chargers: ChargerFactory):
    """A 2.0.1 charger drops a reservation itself (ReservationStatusUpdate Removed): it lists as Removed."""
    cp = await chargers("2.0.1")
    rid = next_id()
    assert answer_of(await api.reserve(cp.port_ids[2], rid)) == (200, "Accepted")
    await api.wait_listed(cp.id, rid, "Accepted")
    cp.sim.remove_reservation(rid)
    record = await api.wait_listed(cp.id, rid, "Removed")
    assert record["active"] is False
    await cp.sim.wait_for(lambda c: c.sent["ReservationStatusUpdate"] == 1, timeout=5)
    await api.wait_port_status(cp.id, 2, "Available")


async def test_listing_filters_by_state(api: Api, chargers: ChargerFactory):
    """The list's status and active filters tell the live reservation from the ended one."""
    cp = await chargers("1.6")
    live, ended = next_id(), next_id()
    assert answer_of(await api.reserve(cp.port_ids[1], live)) == (200, "Accepted")
    assert answer_of(await api.reserve(cp.port_ids[2], ended)) == (200, "Accepted")
    assert answer_of(await api.cancel(cp.id, ended)) == (200, "Accepted")
    query = {"chargerId": cp.id}
    active = await api.http.get("/api/ocpp/reservations", params={**query, "active": "true"}, headers=api.headers)
    cancelled = await api.http.get(
        "/api/ocpp/reservations", params={**query, "status": "Cancelled"}, headers=api.headers
    )
    assert [r["reservationId"] for r in active.json()["data"]] == [live]
    assert [r["reservationId"] for r in cancelled.json()["data"]] == [ended]
