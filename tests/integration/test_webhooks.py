"""Webhooks on the real local stack: a reservation's every change reaches a signed receiver and the bus.

The whole path runs: the API (local Lambda runtime), a real gateway and a real charger,
DynamoDB Local's stream read by the local event source, the publisher, the delivery queue
(the SQS stand-in) read by the local SQS event source, the deliverer POSTing to a receiver
on 127.0.0.1 (``devstack.webhook_echo``, which verifies each signature), and the
EventBridge stand-in with a partner's rule to a queue. The suite's local API retries a
failed delivery after 1 s, then every 2 s (tests/fixtures/api_fixtures.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fixtures.functions import REPO, load_function
from fixtures.gateway_fixtures import Behaviour, charger_session, wait_held

from devstack.local_api import LocalApi
from devstack.webhook_echo import WebhookEcho
from evreserve.events import EVENT_SOURCE
from evreserve.models import OcppVersion

pytestmark = pytest.mark.integration

CHILD = REPO / "tests" / "fixtures" / "publisher_child.py"


class Partner:
    """A new account with a key, a webhook to an echo receiver, and a rule on the bus to a queue."""

    def __init__(self, http: httpx.AsyncClient, echo: WebhookEcho, webhook: dict[str, Any], rule: dict[str, Any]):
        self.http, self.echo, self.webhook, self.rule = http, echo, webhook, rule

    async def bus_events(self, count: int, limit_s: float = 30.0) -> list[dict[str, Any]]:
        """``count`` distinct events (by id) from the rule's queue: the EventBridge envelopes' details."""
        sqs, queue = self.rule["sqs"], self.rule["queue"]
        got: dict[str, dict[str, Any]] = self.rule.setdefault("got", {})
        deadline = asyncio.get_running_loop().time() + limit_s
        while len(got) < count and asyncio.get_running_loop().time() < deadline:
            answer = await asyncio.to_thread(
                sqs.receive_message, QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1
            )
            for message in answer.get("Messages", []):
                envelope = json.loads(message["Body"])
                assert envelope["source"] == EVENT_SOURCE and envelope["detail-type"] == envelope["detail"]["type"]
                got.setdefault(envelope["detail"]["id"], envelope["detail"])
                await asyncio.to_thread(sqs.delete_message, QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        return list(got.values())

    async def shown(self, rid: int) -> dict[str, Any]:
        answer = await self.http.get(f"/api/ocpp/reservations/{rid}")
        assert answer.status_code == 200
        return answer.json()["data"]


@pytest.fixture
async def partner(local_api: LocalApi, local_aws: Any, admin_api_key: str) -> AsyncIterator[Partner]:
    mark = secrets.token_hex(4)
    admin = {"Authorization": f"Bearer {admin_api_key}"}
    async with httpx.AsyncClient(base_url=local_api.url, timeout=30, headers=admin) as http:
        account = (await http.post("/api/admin/accounts", json={"name": f"hooks-{mark}"})).json()["data"]
        created = await http.post(f"/api/admin/accounts/{account['id']}/api-keys", json={"name": "owner"})
        key = created.json()["data"]["apiKey"]
    events, sqs = local_aws.eventbridge.client("events"), local_aws.eventbridge.client("sqs")
    bus = local_aws.resources["EVENT_BUS_NAME"]
    queue = sqs.create_queue(QueueName=f"hooks-{mark}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = {"source": [EVENT_SOURCE], "detail": {"accountId": [account["id"]]}}
    events.put_rule(Name=f"hooks-{mark}", EventBusName=bus, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=f"hooks-{mark}", EventBusName=bus, Targets=[{"Id": "queue", "Arn": arn}])
    with WebhookEcho() as echo:
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=local_api.url, timeout=30, headers=headers) as http:
            answer = await http.post("/api/webhooks", json={"url": echo.url, "description": "e2e"})
            assert answer.status_code == 201, answer.text
            webhook = answer.json()["data"]
            echo.secret = webhook["secret"]
            yield Partner(http, echo, webhook | {"account_id": account["id"]}, {"sqs": sqs, "queue": queue})
            await http.delete(f"/api/webhooks/{webhook['id']}")


async def _reserve(partner: Partner, port_id: int, rid: int, *, seconds: float = 3600) -> httpx.Response:
    expiry = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
    body = {"portId": port_id, "expiryDate": expiry, "idTag": "RFID-HOOK", "reservationId": rid}
    return await partner.http.post("/api/ocpp/reservations", json=body)


async def _use(cp: Any, version: OcppVersion, rid: int, connector: int) -> None:
    from ocpp.v16 import call as call16
    from ocpp.v201 import call as call201

    now = datetime.now(UTC).isoformat()
    if version is OcppVersion.V16:
        request: Any = call16.StartTransaction(
            connector_id=connector, id_tag="RFID-HOOK", meter_start=0, timestamp=now, reservation_id=rid
        )
    else:
        request = call201.TransactionEvent(
            event_type="Started",
            timestamp=now,
            trigger_reason="Authorized",
            seq_no=0,
            transaction_info={"transaction_id": f"tx-{rid}"},
            id_token={"id_token": "RFID-HOOK", "type": "ISO14443"},
            evse={"id": connector, "connector_id": 1},
            reservation_id=rid,
        )
    await cp.call(request)


async def _charger_ends(cp: Any, version: OcppVersion, rid: int, connector: int, status: str) -> None:
    """The charger ends a reservation: 2.0.1 ReservationStatusUpdate; 1.6 its port Faulted (Removed only)."""
    from ocpp.v16 import call as call16
    from ocpp.v201 import call as call201

    if version is OcppVersion.V201:
        await cp.call(call201.ReservationStatusUpdate(reservation_id=rid, reservation_update_status=status))
        return
    assert status == "Removed"
    await cp.call(
        call16.StatusNotification(
            connector_id=connector,
            error_code="GroundFailure",
            status="Faulted",
            timestamp=datetime.now(UTC).isoformat(),
        )
    )


@pytest.mark.parametrize("version", [OcppVersion.V16, OcppVersion.V201])
async def test_every_kind_of_change_reaches_the_webhook_signed_and_the_bus_alike(
    partner: Partner, start_gateway, seed_charger, registry, reservation_store, version
):
    """accepted, cancelled, refused, failed, used, removed and expired: each once, as GET shows it."""
    sweeper: Any = load_function("sweeper")
    gateway = await start_gateway()
    charger = seed_charger(account_id=partner.webhook["account_id"])
    behaviour = Behaviour()
    first, second = charger.ports[0], charger.ports[1]
    base = 1_100_000 + secrets.randbelow(100_000) * 10
    a, b, c, d, e, f = (base + n for n in range(6))
    async with charger_session(gateway, charger, version, behaviour) as cp:
        await wait_held(gateway, charger, registry)
        assert (await _reserve(partner, first.id, a)).json() == {"data": {"status": "Accepted"}}
        cancel = await partner.http.post(
            "/api/ocpp/reservations/cancel", json={"chargerId": charger.id, "reservationId": a}
        )
        assert cancel.json() == {"data": {"status": "Accepted"}}
        behaviour.status = "Occupied"
        assert (await _reserve(partner, first.id, b)).json() == {"data": {"status": "Occupied"}}
        behaviour.status, behaviour.mode = "Accepted", "internal_error"
        assert (await _reserve(partner, first.id, c)).status_code == 502
        behaviour.mode = "answer"
        assert (await _reserve(partner, first.id, d)).json() == {"data": {"status": "Accepted"}}
        await _use(cp, version, d, first.port_number)
        assert (await _reserve(partner, second.id, e)).json() == {"data": {"status": "Accepted"}}
        await _charger_ends(cp, version, e, second.port_number, "Removed")
        if version is OcppVersion.V16:
            # Back in service, then a reservation that lapses with no word from the charger.
            from ocpp.v16 import call as call16

            await cp.call(
                call16.StatusNotification(
                    connector_id=second.port_number,
                    error_code="NoError",
                    status="Available",
                    timestamp=datetime.now(UTC).isoformat(),
                )
            )
            assert (await _reserve(partner, second.id, f, seconds=3)).json() == {"data": {"status": "Accepted"}}
            await asyncio.sleep(3.5)
            await asyncio.to_thread(sweeper.sweep, reservation_store, lookahead=timedelta(seconds=5))
        else:
            assert (await _reserve(partner, second.id, f)).json() == {"data": {"status": "Accepted"}}
            await _charger_ends(cp, version, f, second.port_number, "Expired")
        hooked = await asyncio.to_thread(partner.echo.wait_for, 10, 60.0)
        on_bus = await partner.bus_events(10)
        shown = {rid: await partner.shown(rid) for rid in (a, b, c, d, e, f)}
    assert partner.echo.rejected == []  # every delivery's signature verified
    kinds = sorted((event["data"]["reservationId"] - base, event["type"]) for event in hooked)
    assert kinds == [
        (0, "reservation.accepted"),
        (0, "reservation.cancelled"),
        (1, "reservation.refused"),
        (2, "reservation.failed"),
        (3, "reservation.accepted"),
        (3, "reservation.used"),
        (4, "reservation.accepted"),
        (4, "reservation.removed"),
        (5, "reservation.accepted"),
        (5, "reservation.expired"),
    ]
    last = {event["data"]["reservationId"]: event for event in hooked if event["type"] != "reservation.accepted"}
    for rid, event in last.items():
        assert event["data"] == shown[rid], event["type"]
        assert event["accountId"] == partner.webhook["account_id"]
    for received in partner.echo.received:
        assert received.headers["Evreserve-Event-Id"] == received.event["id"]
    # The bus got the very same events.
    assert sorted(on_bus, key=lambda x: x["id"]) == sorted(hooked, key=lambda x: x["id"])


async def test_a_receiver_that_fails_for_a_while_gets_every_event_later_with_the_same_id(
    partner: Partner, start_gateway, seed_charger, registry
):
    gateway = await start_gateway()
    charger = seed_charger(account_id=partner.webhook["account_id"])
    rid = 1_300_000 + secrets.randbelow(100_000)
    partner.echo.down = True
    async with charger_session(gateway, charger, OcppVersion.V16, Behaviour()):
        await wait_held(gateway, charger, registry)
        assert (await _reserve(partner, charger.ports[0].id, rid)).json() == {"data": {"status": "Accepted"}}
        cancel = {"chargerId": charger.id, "reservationId": rid}
        assert (await partner.http.post("/api/ocpp/reservations/cancel", json=cancel)).json()["data"][
            "status"
        ] == "Accepted"
        on_bus = await partner.bus_events(2)

        def refused_thrice() -> bool:
            ids = [event_id for event_id, status in partner.echo.attempts if status == 500]
            return len(ids) >= 6 and all(ids.count(event["id"]) >= 3 for event in on_bus)

        for _ in range(300):
            if refused_thrice():
                break
            await asyncio.sleep(0.1)
        assert refused_thrice(), partner.echo.attempts
        partner.echo.down = False
        hooked = await asyncio.to_thread(partner.echo.wait_for, 2, 30.0)
        log = (
            await partner.http.get(f"/api/webhooks/{partner.webhook['id']}/deliveries", params={"limit": 100})
        ).json()
    assert sorted(e["id"] for e in hooked) == sorted(e["id"] for e in on_bus)
    assert sorted(json.dumps(e, sort_keys=True) for e in hooked) == sorted(
        json.dumps(e, sort_keys=True) for e in on_bus
    )
    for event in on_bus:
        attempts = [entry for entry in log["data"] if entry["eventId"] == event["id"]]
        statuses = [entry["status"] for entry in sorted(attempts, key=lambda x: x["attempt"])]
        assert statuses[-1] == "delivered" and set(statuses[:-1]) == {"retrying"} and len(statuses) >= 4, statuses
        assert all(entry["responseStatus"] == 500 for entry in attempts if entry["status"] == "retrying")
        assert [entry["attempt"] for entry in sorted(attempts, key=lambda x: x["attempt"])] == list(
            range(1, len(attempts) + 1)
        )


async def test_killing_the_publisher_mid_batch_loses_nothing(
    local_api: LocalApi, local_aws: Any, partner: Partner, start_gateway, seed_charger, registry
):
    """The publisher process is SIGKILLed after EventBridge took its first call; the stream gives the batch again."""
    (poller,) = [p for p in local_api.stream_pollers if p.source.function_id == "PublisherFunction"]
    real = poller._invoke
    env = {**local_aws.env(), **local_aws.resources}
    kills: list[int] = []

    def in_a_process_that_dies(event: dict[str, Any]) -> Any:
        if kills:
            return real(event)
        done = subprocess.run(
            [sys.executable, str(CHILD)],
            input=json.dumps(event),
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode == 0:
            return {"batchItemFailures": []}  # a batch with no event: the child published nothing and lived
        kills.append(done.returncode)
        raise RuntimeError(f"the publisher died ({done.returncode}): {done.stderr[-500:]}")

    gateway = await start_gateway()
    charger = seed_charger(account_id=partner.webhook["account_id"])
    rid = 1_400_000 + secrets.randbelow(100_000)
    poller._invoke = in_a_process_that_dies
    try:
        async with charger_session(gateway, charger, OcppVersion.V201, Behaviour()):
            await wait_held(gateway, charger, registry)
            assert (await _reserve(partner, charger.ports[0].id, rid)).json() == {"data": {"status": "Accepted"}}
            cancel = {"chargerId": charger.id, "reservationId": rid}
            assert (await partner.http.post("/api/ocpp/reservations/cancel", json=cancel)).status_code == 200
            hooked = await asyncio.to_thread(partner.echo.wait_for, 2, 60.0)
            on_bus = await partner.bus_events(2)
    finally:
        poller._invoke = real
    assert kills and kills[0] == -9
    assert sorted(e["type"] for e in hooked) == ["reservation.accepted", "reservation.cancelled"]
    assert sorted(e["id"] for e in hooked) == sorted(e["id"] for e in on_bus)
