"""Reservation events on the real local stack: stream -> publisher -> EventBridge -> a partner's rule -> SQS.

DynamoDB Local's stream read by the local stand-in of Lambda's event source, the publisher
function run by the local API's runtime, the EventBridge stand-in (moto) with a rule to a
queue, a real gateway and a real charger answering ReserveNow / CancelReservation.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fixtures.functions import load_function
from fixtures.gateway_fixtures import Behaviour, charger_session, wait_held

from devstack.local_api import LocalApi
from evreserve.events import EVENT_SOURCE
from evreserve.models import OcppVersion

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def partner(local_api: LocalApi, local_aws: Any, admin_api_key: str) -> dict[str, Any]:
    """An account with a key, and a rule on the bus sending its events to a queue."""
    mark = secrets.token_hex(4)
    with httpx.Client(base_url=local_api.url, timeout=30, headers={"Authorization": f"Bearer {admin_api_key}"}) as http:
        account = http.post("/api/admin/accounts", json={"name": f"events-{mark}"}).json()["data"]
        key = http.post(f"/api/admin/accounts/{account['id']}/api-keys", json={"name": "k"}).json()["data"]["apiKey"]
    events, sqs = local_aws.eventbridge.client("events"), local_aws.eventbridge.client("sqs")
    bus = local_aws.resources["EVENT_BUS_NAME"]
    queue = sqs.create_queue(QueueName=f"partner-{mark}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = {"source": [EVENT_SOURCE], "detail": {"accountId": [account["id"]]}}
    events.put_rule(Name=f"partner-{mark}", EventBusName=bus, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=f"partner-{mark}", EventBusName=bus, Targets=[{"Id": "queue", "Arn": arn}])
    return {"account_id": account["id"], "key": key, "sqs": sqs, "queue": queue}


async def _events(
    partner: dict[str, Any], count: int, reservations: Collection[int], limit_s: float = 20.0
) -> list[dict[str, Any]]:
    """Wait for ``count`` events about ``reservations`` on the partner's queue (EventBridge envelopes).

    Events about other reservations are taken off the queue and left out: they are an
    earlier test's, published late (a test that failed before reading its own, say), and
    must not stand in for the ones awaited here.
    """
    got: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + limit_s
    while len(got) < count and asyncio.get_running_loop().time() < deadline:
        answer = await asyncio.to_thread(
            partner["sqs"].receive_message, QueueUrl=partner["queue"], MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        for message in answer.get("Messages", []):
            event = json.loads(message["Body"])
            if event["detail"]["data"]["reservationId"] in reservations:
                got.append(event)
            partner["sqs"].delete_message(QueueUrl=partner["queue"], ReceiptHandle=message["ReceiptHandle"])
    return got


@pytest.mark.parametrize("version", [OcppVersion.V16, OcppVersion.V201])
async def test_a_rule_receives_accepted_refused_and_cancelled_events_as_get_shows_them(
    local_api: LocalApi, partner, start_gateway, seed_charger, registry, version
):
    """Reserve (Accepted), cancel, reserve again (Occupied): three events, each with the reservation as GET shows it."""
    gateway = await start_gateway()
    charger = seed_charger(account_id=partner["account_id"])
    behaviour = Behaviour()
    base = 700_000 + secrets.randbelow(100_000) * 10
    async with (
        charger_session(gateway, charger, version, behaviour),
        httpx.AsyncClient(
            base_url=local_api.url, timeout=30, headers={"Authorization": f"Bearer {partner['key']}"}
        ) as http,
    ):
        await wait_held(gateway, charger, registry)
        expiry = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        port = charger.ports[0].id
        reserve = {"portId": port, "expiryDate": expiry, "idTag": "RFID-EV", "reservationId": base}
        assert (await http.post("/api/ocpp/reservations", json=reserve)).json() == {"data": {"status": "Accepted"}}
        cancel = {"chargerId": charger.id, "reservationId": base}
        assert (await http.post("/api/ocpp/reservations/cancel", json=cancel)).json() == {
            "data": {"status": "Accepted"}
        }
        behaviour.status = "Occupied"
        again = {**reserve, "reservationId": base + 1}
        assert (await http.post("/api/ocpp/reservations", json=again)).json() == {"data": {"status": "Occupied"}}
        got = await _events(partner, 3, {base, base + 1})
        shown = {rid: (await http.get(f"/api/ocpp/reservations/{rid}")).json()["data"] for rid in (base, base + 1)}
    by_type = {e["detail-type"]: e for e in got}
    assert sorted(by_type) == ["reservation.accepted", "reservation.cancelled", "reservation.refused"]
    assert all(e["source"] == EVENT_SOURCE for e in got)
    assert len({e["detail"]["id"] for e in got}) == 3
    cancelled, refused = by_type["reservation.cancelled"]["detail"], by_type["reservation.refused"]["detail"]
    assert cancelled["data"] == shown[base] and refused["data"] == shown[base + 1]
    assert by_type["reservation.accepted"]["detail"]["data"]["status"] == "Accepted"
    assert {e["detail"]["accountId"] for e in got} == {partner["account_id"]}


async def test_an_expiry_with_no_charger_message_is_stored_and_published_within_60_s(
    local_api: LocalApi, partner, start_gateway, seed_charger, registry, reservation_store
):
    """OCPP 1.6: the charger says nothing when a reservation lapses; the sweep stores Expired at the expiryDate."""
    sweeper: Any = load_function("sweeper")
    gateway = await start_gateway()
    charger = seed_charger(account_id=partner["account_id"])
    behaviour = Behaviour()
    rid = 800_000 + secrets.randbelow(100_000)
    async with (
        charger_session(gateway, charger, OcppVersion.V16, behaviour),
        httpx.AsyncClient(
            base_url=local_api.url, timeout=30, headers={"Authorization": f"Bearer {partner['key']}"}
        ) as http,
    ):
        await wait_held(gateway, charger, registry)
        expiry = datetime.now(UTC) + timedelta(seconds=4)
        reserve = {
            "portId": charger.ports[0].id,
            "expiryDate": expiry.isoformat(),
            "idTag": "RFID-X",
            "reservationId": rid,
        }
        assert (await http.post("/api/ocpp/reservations", json=reserve)).json() == {"data": {"status": "Accepted"}}
        assert await _events(partner, 1, {rid}) != []  # the accepted one
        # The local stack's own sweep (scheduled every minute, as deployed) may get there
        # first; either way it is stored once, and published once.
        await asyncio.to_thread(sweeper.sweep, reservation_store, lookahead=timedelta(seconds=30))
        (event,) = await _events(partner, 1, {rid})
        shown = (await http.get(f"/api/ocpp/reservations/{rid}")).json()["data"]
    assert [action for action, _ in behaviour.received] == ["ReserveNow"]  # nothing else was sent
    assert event["detail-type"] == "reservation.expired" and event["detail"]["data"] == shown
    assert shown["status"] == "Expired" and shown["active"] is False
    stored_at = datetime.fromisoformat(event["detail"]["createdAt"].replace("Z", "+00:00"))
    assert (
        timedelta(0)
        <= stored_at - expiry.replace(microsecond=expiry.microsecond // 1000 * 1000)
        < timedelta(seconds=60)
    )


@pytest.mark.parametrize("version", [OcppVersion.V16, OcppVersion.V201])
async def test_the_reserved_driver_starting_is_a_used_event(
    local_api: LocalApi, partner, start_gateway, seed_charger, registry, version
):
    """1.6 StartTransaction / 2.0.1 TransactionEvent with the reservationId: reservation.used, as GET shows it."""
    from ocpp.v16 import call as call16
    from ocpp.v201 import call as call201

    gateway = await start_gateway()
    charger = seed_charger(account_id=partner["account_id"])
    rid = 900_000 + secrets.randbelow(90_000)
    async with (
        charger_session(gateway, charger, version, Behaviour()) as cp,
        httpx.AsyncClient(
            base_url=local_api.url, timeout=30, headers={"Authorization": f"Bearer {partner['key']}"}
        ) as http,
    ):
        await wait_held(gateway, charger, registry)
        expiry = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        reserve = {"portId": charger.ports[0].id, "expiryDate": expiry, "idTag": "RFID-USE", "reservationId": rid}
        assert (await http.post("/api/ocpp/reservations", json=reserve)).json() == {"data": {"status": "Accepted"}}
        now = datetime.now(UTC).isoformat()
        if version is OcppVersion.V16:
            await cp.call(
                call16.StartTransaction(
                    connector_id=1, id_tag="RFID-USE", meter_start=0, timestamp=now, reservation_id=rid
                )
            )
        else:
            await cp.call(
                call201.TransactionEvent(
                    event_type="Started",
                    timestamp=now,
                    trigger_reason="Authorized",
                    seq_no=0,
                    transaction_info={"transaction_id": f"tx-{rid}"},
                    id_token={"id_token": "RFID-USE", "type": "ISO14443"},
                    evse={"id": 1, "connector_id": 1},
                    reservation_id=rid,
                )
            )
        got = await _events(partner, 2, {rid})
        shown = (await http.get(f"/api/ocpp/reservations/{rid}")).json()["data"]
    mine = [e for e in got if e["detail"]["data"]["reservationId"] == rid]
    assert [e["detail-type"] for e in mine] == ["reservation.accepted", "reservation.used"]
    assert mine[1]["detail"]["data"] == shown and shown["status"] == "Used"
