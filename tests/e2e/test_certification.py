"""The reservation cases of the OCPP certification test plans, as a CSMS must pass them.

OCPP 1.6 (OCA's CSMS test cases): TC_046 reserve and use, TC_047 expiry, TC_048_1..4 the
refusals, TC_049 the charge point as a whole (connectorId 0), TC_051 cancel, TC_052 cancel of
an unknown reservation, and the group case. OCPP 2.0.1, functional block H: H01 reserve a
given EVSE or none, H02 cancel, H03 use by the reserved token and by a member of its group,
H04 ReservationStatusUpdate Expired and Removed.

Each runs on the real local stack: the API, two gateways and a simulated charger; the API
is the CSMS's operator and the message log (``GET /api/ocpp-messages``) is where each case
reads what the CSMS answered to every message the charger sent.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from e2e_stack import Api, ChargerFactory, answer_of, next_id

from simulator import Behaviour, PortStatus, ReserveStatus

pytestmark = pytest.mark.e2e


async def logged(api: Api, charger_id: int, *wanted: str, timeout: float = 10.0) -> dict[str, list[dict[str, Any]]]:  # noqa: ASYNC109
    """The charger's logged messages by action, once every action in ``wanted`` is there."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        answer = await api.http.get(
            "/api/ocpp-messages", params={"chargerId": charger_id, "limit": 500}, headers=api.headers
        )
        assert answer.status_code == 200, answer.text
        by_action: dict[str, list[dict[str, Any]]] = {}
        for message in answer.json()["data"]:
            by_action.setdefault(message["messageType"], []).append(message)
        if all(action in by_action for action in wanted):
            return by_action
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the message log lacks {set(wanted) - set(by_action)}")
        await asyncio.sleep(0.3)


async def register_token(api: Api, tag: str, group: str, status: str = "Authorized") -> None:
    body = {"ocppIdTag": tag, "type": "RFID", "parentIdTag": group, "authorizationStatus": status}
    created = await api.http.post("/api/access-ids", json=body, headers=api.headers)
    assert created.status_code == 201, created.text


# -- OCPP 1.6 --------------------------------------------------------------------------------------


async def test_TC_046_reservation_of_a_connector_is_used_by_the_reserved_driver(api: Api, chargers: ChargerFactory):
    """ReserveNow Accepted, the connector Reserved; the driver's Authorize, StartTransaction (with the
    reservationId) and StatusNotification are each answered, and the reservation is used."""
    cp = await chargers("1.6")
    rid = next_id()
    assert answer_of(await api.reserve(cp.port_ids[1], rid, id_tag="TC046")) == (200, "Accepted")
    await api.wait_port_status(cp.id, 1, "Reserved")
    tx = await cp.sim.start_transaction(1, "TC046")
    assert tx.reservation_id == rid
    await api.wait_listed(cp.id, rid, "Used")
    await api.wait_port_status(cp.id, 1, "Charging")
    log = await logged(api, cp.id, "ReserveNow", "Authorize", "StartTransaction")
    assert log["ReserveNow"][0]["messageResponse"] == {"status": "Accepted"}
    assert log["Authorize"][0]["messageResponse"] == {"idTagInfo": {"status": "Accepted"}}
    started = log["StartTransaction"][0]
    assert started["messagePayload"]["reservationId"] == rid
    assert started["messageResponse"]["idTagInfo"] == {"status": "Accepted"}
    assert started["messageResponse"]["transactionId"] == tx.transaction_id
    assert all(m["messageResponse"] == {} for m in log["StatusNotification"])


async def test_TC_047_reservation_of_a_connector_expires(api: Api, chargers: ChargerFactory):
    """The reservation's expiryDate passes: the connector is Available again, the record Expired."""
    cp = await chargers("1.6")
    rid = next_id()
    assert answer_of(await api.reserve(cp.port_ids[1], rid, expires_in_s=2)) == (200, "Accepted")
    await api.wait_port_status(cp.id, 1, "Reserved")
    await api.wait_port_status(cp.id, 1, "Available", timeout=8)
    assert (await api.wait_listed(cp.id, rid, "Expired", timeout=8))["active"] is False


async def _refused(api: Api, cp: Any, status: str) -> None:
    rid = next_id()
    assert answer_of(await api.reserve(cp.port_ids[1], rid)) == (200, status)
    assert rid not in cp.sim.reservations
    record = await api.reservation(rid)
    assert (record["status"], record["active"]) == (status, False)
    log = await logged(api, cp.id, "ReserveNow")
    assert log["ReserveNow"][0]["messageResponse"] == {"status": status}


async def test_TC_048_1_reservation_of_a_faulted_connector(api: Api, chargers: ChargerFactory):
    cp = await chargers("1.6")
    cp.sim.set_port_status(1, PortStatus.FAULTED)
    await api.wait_port_status(cp.id, 1, "Faulted")
    await _refused(api, cp, "Faulted")


async def test_TC_048_2_reservation_of_an_occupied_connector(api: Api, chargers: ChargerFactory):
    cp = await chargers("1.6")
    await cp.sim.start_transaction(1, "SOMEONE")
    await _refused(api, cp, "Occupied")


async def test_TC_048_3_reservation_of_an_unavailable_connector(api: Api, chargers: ChargerFactory):
    cp = await chargers("1.6")
    cp.sim.set_port_status(1, PortStatus.UNAVAILABLE)
    await api.wait_port_status(cp.id, 1, "Unavailable")
    await _refused(api, cp, "Unavailable")


async def test_TC_048_4_reservation_rejected(api: Api, chargers: ChargerFactory):
    cp = await chargers("1.6", behaviour=Behaviour(reserve_answer=ReserveStatus.REJECTED))
    await _refused(api, cp, "Rejected")


async def test_TC_049_reservation_of_the_charge_point_is_used_on_a_connector(api: Api, chargers: ChargerFactory):
    """ReserveNow with connectorId 0 (ReserveConnectorZeroSupported); the driver starts on connector 2 with
    the reservationId; the record takes connector 2 and ends Used."""
    cp = await chargers("1.6", behaviour=Behaviour(reserve_connector_zero=True))
    rid = next_id()
    assert answer_of(await api.reserve(None, rid, id_tag="TC049", chargerId=cp.id)) == (200, "Accepted")
    log = await logged(api, cp.id, "ReserveNow")
    assert log["ReserveNow"][0]["messagePayload"]["connectorId"] == 0
    assert (await api.reservation(rid))["portId"] is None
    tx = await cp.sim.start_transaction(2, "TC049")
    assert tx.reservation_id == rid
    record = await api.wait_listed(cp.id, rid, "Used")
    assert (record["portId"], record["portNumber"]) == (cp.port_ids[2], 2)


async def test_TC_051_cancel_reservation(api: Api, chargers: ChargerFactory):
    """CancelReservation Accepted: the connector goes from Reserved to Available, the record is Cancelled."""
    cp = await chargers("1.6")
    rid = next_id()
    assert answer_of(await api.reserve(cp.port_ids[1], rid)) == (200, "Accepted")
    await api.wait_port_status(cp.id, 1, "Reserved")
    assert answer_of(await api.cancel(cp.id, rid)) == (200, "Accepted")
    await api.wait_port_status(cp.id, 1, "Available")
    assert (await api.reservation(rid))["status"] == "Cancelled"
    log = await logged(api, cp.id, "CancelReservation")
    assert log["CancelReservation"][0]["messagePayload"] == {"reservationId": rid}


async def test_TC_052_cancel_reservation_the_charger_does_not_hold(api: Api, chargers: ChargerFactory):
    cp = await chargers("1.6")
    rid = next_id()
    assert answer_of(await api.cancel(cp.id, rid)) == (200, "Rejected")
    log = await logged(api, cp.id, "CancelReservation")
    assert log["CancelReservation"][0]["messageResponse"] == {"status": "Rejected"}


async def test_TC_046_group_a_member_of_the_parent_id_tag_uses_the_reservation(api: Api, chargers: ChargerFactory):
    """The reservation carries parentIdTag; another driver registered in that group is told the group on
    Authorize and starts on the reserved connector with the reservation."""
    cp = await chargers("1.6")
    rid = next_id()
    group = f"G16-{rid}"
    await register_token(api, f"MEMBER-{rid}", group)
    assert answer_of(await api.reserve(cp.port_ids[1], rid, id_tag=f"OWNER-{rid}", parentIdTag=group)) == (
        200,
        "Accepted",
    )
    tx = await cp.sim.start_transaction(1, f"MEMBER-{rid}")
    assert tx.reservation_id == rid
    await api.wait_listed(cp.id, rid, "Used")
    log = await logged(api, cp.id, "Authorize", "StartTransaction")
    assert log["Authorize"][0]["messageResponse"] == {"idTagInfo": {"status": "Accepted", "parentIdTag": group}}
    assert log["ReserveNow"][0]["messagePayload"]["parentIdTag"] == group


# -- OCPP 2.0.1, block H ---------------------------------------------------------------------------


async def test_H01_reserve_a_specific_evse(api: Api, chargers: ChargerFactory):
    cp = await chargers("2.0.1")
    rid = next_id()
    assert answer_of(await api.reserve(cp.port_ids[2], rid, idTokenType="ISO14443")) == (200, "Accepted")
    await api.wait_port_status(cp.id, 2, "Reserved")
    log = await logged(api, cp.id, "ReserveNow")
    request = log["ReserveNow"][0]["messagePayload"]
    assert (request["id"], request["evseId"], request["idToken"]["type"]) == (rid, 2, "ISO14443")


async def test_H01_reserve_an_unspecified_evse(api: Api, chargers: ChargerFactory):
    """ReserveNow without evseId (NonEvseSpecific); a transaction on EVSE 1 uses it and gives it that EVSE."""
    cp = await chargers("2.0.1", behaviour=Behaviour(non_evse_specific=True))
    rid = next_id()
    assert answer_of(await api.reserve(None, rid, id_tag="H01", chargerId=cp.id)) == (200, "Accepted")
    log = await logged(api, cp.id, "ReserveNow")
    assert "evseId" not in log["ReserveNow"][0]["messagePayload"]
    await cp.sim.start_transaction(1, "H01")
    record = await api.wait_listed(cp.id, rid, "Used")
    assert record["portNumber"] == 1


async def test_H02_cancel_reservation(api: Api, chargers: ChargerFactory):
    cp = await chargers("2.0.1")
    rid = next_id()
    assert answer_of(await api.reserve(cp.port_ids[1], rid)) == (200, "Accepted")
    await api.wait_port_status(cp.id, 1, "Reserved")
    assert answer_of(await api.cancel(cp.id, rid)) == (200, "Accepted")
    await api.wait_port_status(cp.id, 1, "Available")
    assert (await api.reservation(rid))["status"] == "Cancelled" and rid not in cp.sim.reservations
    log = await logged(api, cp.id, "CancelReservation")
    assert log["CancelReservation"][0]["messagePayload"] == {"reservationId": rid}


async def test_H03_use_of_a_reservation_by_the_reserved_token(api: Api, chargers: ChargerFactory):
    cp = await chargers("2.0.1")
    rid = next_id()
    assert answer_of(await api.reserve(cp.port_ids[1], rid, id_tag="H03")) == (200, "Accepted")
    tx = await cp.sim.start_transaction(1, "H03")
    assert tx.reservation_id == rid
    await api.wait_listed(cp.id, rid, "Used")
    log = await logged(api, cp.id, "Authorize", "TransactionEvent")
    started = log["TransactionEvent"][0]
    assert started["messagePayload"]["reservationId"] == rid
    assert started["messageResponse"] == {"idTokenInfo": {"status": "Accepted"}}


async def test_H03_use_of_a_reservation_by_a_member_of_its_group(api: Api, chargers: ChargerFactory):
    cp = await chargers("2.0.1")
    rid = next_id()
    group = f"G201-{rid}"
    await register_token(api, f"MEMBER-{rid}", group)
    assert answer_of(await api.reserve(cp.port_ids[1], rid, id_tag=f"OWNER-{rid}", parentIdTag=group)) == (
        200,
        "Accepted",
    )
    with pytest.raises(Exception, match="reserved for another"):
        await cp.sim.start_transaction(1, f"STRANGER-{rid}")
    tx = await cp.sim.start_transaction(1, f"MEMBER-{rid}")
    assert tx.reservation_id == rid
    await api.wait_listed(cp.id, rid, "Used")
    log = await logged(api, cp.id, "Authorize")
    member = [m for m in log["Authorize"] if m["messagePayload"]["idToken"]["idToken"] == f"MEMBER-{rid}"]
    assert member[0]["messageResponse"]["idTokenInfo"]["groupIdToken"] == {"idToken": group, "type": "Central"}


async def test_H04_reservation_status_update_expired(api: Api, chargers: ChargerFactory):
    cp = await chargers("2.0.1")
    rid = next_id()
    assert answer_of(await api.reserve(cp.port_ids[1], rid, expires_in_s=2)) == (200, "Accepted")
    await api.wait_listed(cp.id, rid, "Expired", timeout=8)
    log = await logged(api, cp.id, "ReservationStatusUpdate")
    update = log["ReservationStatusUpdate"][0]
    assert update["messagePayload"] == {"reservationId": rid, "reservationUpdateStatus": "Expired"}
    assert update["messageResponse"] == {}


async def test_H04_reservation_status_update_removed(api: Api, chargers: ChargerFactory):
    cp = await chargers("2.0.1")
    rid = next_id()
    assert answer_of(await api.reserve(cp.port_ids[2], rid)) == (200, "Accepted")
    await api.wait_listed(cp.id, rid, "Accepted")
    cp.sim.remove_reservation(rid)
    assert (await api.wait_listed(cp.id, rid, "Removed"))["active"] is False
    log = await logged(api, cp.id, "ReservationStatusUpdate")
    assert log["ReservationStatusUpdate"][0]["messagePayload"]["reservationUpdateStatus"] == "Removed"
