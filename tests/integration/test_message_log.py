"""The OCPP message log on the real local stack: gateways log, the API lists.

DynamoDB Local and the SQS server (the session's), a real gateway on 127.0.0.1:0 with
the log flushing every 0.2 s, real chargers (the ocpp library), and the local API over
template.yaml answering ``GET /api/ocpp-messages``.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fixtures.gateway_fixtures import Behaviour, charger_session, wait_held, wait_until
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from devstack.local_api import LocalApi
from evreserve.errors import DependencyUnavailable
from evreserve.models import OcppVersion, OutcomeKind
from evreserve.storage.messages import Batch
from evreserve_gateway import GatewaySettings
from evreserve_gateway.log_writer import ProcessWriter

pytestmark = pytest.mark.integration

V16, V201 = OcppVersion.V16, OcppVersion.V201
FLUSH_S = 0.2


@dataclass
class Keys:
    owner: str
    account_id: int
    foreign: str
    #: The owner's key limited to another charger of the owner's.
    limited: str
    admin: str


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def keys(local_api: LocalApi, admin_api_key: str) -> Keys:
    mark = secrets.token_hex(4)
    with httpx.Client(base_url=local_api.url, timeout=30, headers=_bearer(admin_api_key)) as http:

        def ok(answer: httpx.Response) -> Any:
            assert answer.status_code in (200, 201), answer.text
            return answer.json()["data"]

        owner = ok(http.post("/api/admin/accounts", json={"name": f"log-owner-{mark}"}))
        foreign = ok(http.post("/api/admin/accounts", json={"name": f"log-foreign-{mark}"}))
        owner_key = ok(http.post(f"/api/admin/accounts/{owner['id']}/api-keys", json={"name": "k"}))["apiKey"]
        foreign_key = ok(http.post(f"/api/admin/accounts/{foreign['id']}/api-keys", json={"name": "k"}))["apiKey"]
        other = ok(
            http.post(
                "/api/chargers",
                json={"ocppId": f"LOG-OTHER-{mark}", "ports": [{"portNumber": 1}]},
                headers=_bearer(owner_key),
            )
        )
        limited = ok(
            http.post(
                f"/api/admin/accounts/{owner['id']}/api-keys", json={"name": "limited", "chargerIds": [other["id"]]}
            )
        )["apiKey"]
    return Keys(owner_key, owner["id"], foreign_key, limited, admin_api_key)


def _process_writer(deps: Any) -> Any:
    """The deployed writer, a process of its own (the fixtures' gateways write from a thread)."""
    return replace(deps, log_writer=ProcessWriter(GatewaySettings(), 30))


async def _list(api: LocalApi, key: str, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=api.url, timeout=30, headers=_bearer(key)) as http:
        return await http.get("/api/ocpp-messages", params=params)


async def _all(api: LocalApi, key: str, **params: Any) -> list[dict[str, Any]]:
    """Every page of a listing, in order."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(200):
        answer = await _list(api, key, **params, **({"nextPageCursor": cursor} if cursor else {}))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        items += body["data"]
        cursor = body["pagination"]["nextPageCursor"]
        assert body["pagination"]["hasNextPage"] is (cursor is not None)
        if cursor is None:
            return items
    raise AssertionError("the listing did not end")


async def _charger_calls(cp: Any, version: OcppVersion) -> None:
    """What a charger says on its own: the library path (Boot, Authorize) and the direct path."""
    now = datetime.now(UTC).isoformat()
    if version is V16:
        await cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        await cp.call(call16.Heartbeat())
        await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError", status="Available"))
        await cp.call(
            call16.MeterValues(connector_id=1, meter_value=[{"timestamp": now, "sampledValue": [{"value": "12"}]}])
        )
        await cp.call(call16.Authorize(id_tag="TAG-LOG"))
    else:
        await cp.call(call201.BootNotification(charging_station={"model": "M", "vendorName": "V"}, reason="PowerUp"))
        await cp.call(call201.Heartbeat())
        await cp.call(
            call201.StatusNotification(timestamp=now, connector_status="Available", evse_id=1, connector_id=1)
        )
        await cp.call(
            call201.MeterValues(evse_id=1, meter_value=[{"timestamp": now, "sampledValue": [{"value": 12.0}]}])
        )
        await cp.call(call201.Authorize(id_token={"idToken": "TAG-LOG", "type": "ISO14443"}))


@pytest.mark.parametrize("version", [V16, V201])
async def test_both_directions_are_logged_with_their_answers(
    local_api: LocalApi, keys: Keys, start_gateway, seed_charger, registry, commands, version
):
    """The charger's CALLs (library and direct path) and ours (answered, CALLERROR, timed out) with their answers."""
    gateway = await start_gateway(inject=_process_writer, gateway_message_log_flush_s=FLUSH_S)
    charger = seed_charger(account_id=keys.account_id)
    behaviour = Behaviour()
    async with charger_session(gateway, charger, version, behaviour) as cp:
        await wait_held(gateway, charger, registry)
        await _charger_calls(cp, version)
        await cp._connection.send("this is no OCPP-J frame")  # counted, never listed

        cancel = {"reservationId": 41}
        outcome = await commands.execute(commands.command(charger, version, payload=cancel), gateway.queue_url)
        assert outcome.kind is OutcomeKind.RESULT
        behaviour.mode = "call_error"
        outcome = await commands.execute(commands.command(charger, version, payload=cancel), gateway.queue_url)
        assert outcome.kind is OutcomeKind.CALL_ERROR
        behaviour.mode = "silent"
        outcome = await commands.execute(
            commands.command(charger, version, payload=cancel, timeout_s=1.0), gateway.queue_url
        )
        assert outcome.kind is OutcomeKind.TIMEOUT

        async def listed() -> list[dict[str, Any]]:
            return await _all(local_api, keys.owner, chargerId=charger.id)

        items: list[dict[str, Any]] = []
        for _ in range(100):
            items = await listed()
            if len(items) >= 8:
                break
            await asyncio.sleep(0.2)
    protocol = version.subprotocol
    assert {(i["ocppChargerIdentity"], i["chargerId"], i["protocol"]) for i in items} == {
        (charger.ocpp_id, charger.id, protocol)
    }
    by_type: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for item in items:
        by_type.setdefault((item["direction"], item["messageType"]), []).append(item)
    assert sorted(by_type) == sorted(
        [
            ("fromCharger", t)
            for t in ("BootNotification", "Heartbeat", "StatusNotification", "MeterValues", "Authorize")
        ]
        + [("toCharger", "CancelReservation")]
    )
    boot = by_type[("fromCharger", "BootNotification")][0]
    assert boot["messageResponse"]["status"] == "Accepted"
    assert "currentTime" in by_type[("fromCharger", "Heartbeat")][0]["messageResponse"]
    assert by_type[("fromCharger", "StatusNotification")][0]["messageResponse"] == {}
    authorize = by_type[("fromCharger", "Authorize")][0]
    assert authorize["messageResponse"][("idTagInfo" if version is V16 else "idTokenInfo")]["status"] == "Accepted"
    # Ours, newest first: the timed out one (null), the CALLERROR, the answered one.
    cancels = by_type[("toCharger", "CancelReservation")]
    assert [c["messagePayload"] for c in cancels] == [cancel] * 3
    assert cancels[0]["messageResponse"] is None
    assert cancels[1]["messageResponse"] == {
        "errorCode": "NotSupported",
        "errorDescription": "reservations are disabled",
        "errorDetails": {},
    }
    assert cancels[2]["messageResponse"] == {"status": "Accepted"}
    # Newest first, as created; ids unique.
    created = [i["createdAt"] for i in items]
    assert created == sorted(created, reverse=True)
    assert len({i["id"] for i in items}) == len(items) == 8
    assert gateway.message_log is not None and gateway.message_log.counters["invalidFrames"] == 1


async def test_filters_range_and_pages_across_batches(
    local_api: LocalApi, keys: Keys, start_gateway, seed_charger, registry
):
    """messageType (one, or messageType[] repeated), the range rule, and newest-first pages that cross batches."""
    gateway = await start_gateway(gateway_message_log_flush_s=FLUSH_S)
    charger = seed_charger(account_id=keys.account_id)
    async with charger_session(gateway, charger, V16) as cp:
        await wait_held(gateway, charger, registry)
        for round_ in range(4):  # one batch or more per round: the flush runs between them
            for _ in range(3):
                await cp.call(call16.Heartbeat())
            await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError", status="Available"))
            await asyncio.sleep(FLUSH_S * 4 if round_ < 3 else 0)
        written = gateway.message_log.counters if gateway.message_log else {}
        await wait_until(lambda: written.get("messagesWritten", 0) >= 16, what="the log's batches stored")
    assert written["batchesWritten"] >= 4

    every = await _all(local_api, keys.owner, chargerId=charger.id, limit=3)
    assert len(every) == 16 and len({i["id"] for i in every}) == 16
    times = [datetime.fromisoformat(i["createdAt"].replace("Z", "+00:00")) for i in every]
    assert times == sorted(times, reverse=True)
    assert all(len(i["createdAt"]) == len("2026-12-06T05:39:21.000Z") for i in every)

    heartbeats = await _all(local_api, keys.owner, chargerId=charger.id, messageType="Heartbeat", limit=5)
    assert [i["messageType"] for i in heartbeats] == ["Heartbeat"] * 12
    both = await _list(
        local_api, keys.owner, **{"chargerId": charger.id, "messageType[]": ["Heartbeat", "StatusNotification"]}
    )
    assert len(both.json()["data"]) == 16
    none = await _list(local_api, keys.owner, chargerId=charger.id, messageType="BootNotification")
    assert none.json() == {"data": [], "pagination": {"hasNextPage": False, "nextPageCursor": None}}

    # The range: everything is in the last minute, nothing is before it, 8 days is refused.
    now = datetime.now(UTC)
    recent = await _all(
        local_api, keys.owner, chargerId=charger.id, startTimestamp=(now - timedelta(minutes=1)).isoformat()
    )
    assert len(recent) == 16
    before = await _list(
        local_api, keys.owner, chargerId=charger.id, endTimestamp=(now - timedelta(minutes=1)).isoformat()
    )
    assert before.json()["data"] == []
    too_long = await _list(
        local_api,
        keys.owner,
        chargerId=charger.id,
        startTimestamp=(now - timedelta(days=8)).isoformat(),
        endTimestamp=now.isoformat(),
    )
    assert too_long.status_code == 400 and too_long.json()["code"] == "INVALID_REQUEST"
    forged = await _list(local_api, keys.owner, chargerId=charger.id, nextPageCursor="bm90LWEtY3Vyc29y")
    assert forged.status_code == 400 and forged.json()["code"] == "INVALID_REQUEST"
    missing = await _list(local_api, keys.owner)
    assert missing.status_code == 400


async def test_other_accounts_and_keys_out_of_scope_see_nothing(
    local_api: LocalApi, keys: Keys, start_gateway, seed_charger, registry
):
    """Another account's key and a key limited to other chargers get 404; the admin key 403; the owner the log."""
    gateway = await start_gateway(gateway_message_log_flush_s=FLUSH_S)
    charger = seed_charger(account_id=keys.account_id)
    async with charger_session(gateway, charger, V16) as cp:
        await wait_held(gateway, charger, registry)
        await cp.call(call16.Heartbeat())
        await wait_until(lambda: gateway.message_log and gateway.message_log.counters["messagesWritten"] >= 1)
    for key, status in ((keys.foreign, 404), (keys.limited, 404), (keys.admin, 403)):
        answer = await _list(local_api, key, chargerId=charger.id)
        assert answer.status_code == status, answer.text
        assert charger.ocpp_id not in answer.text
    unknown = await _list(local_api, keys.owner, chargerId=2_000_000_000)
    assert unknown.status_code == 404
    assert len((await _list(local_api, keys.owner, chargerId=charger.id)).json()["data"]) == 1


async def test_storage_down_leaves_charger_traffic_alone_and_counts_drops(
    start_gateway, gateway_settings, seed_charger, registry, caplog
):
    """The log's table unreachable: every CALL is still answered; what the bound cannot hold is dropped and counted."""

    def unreachable(deps: Any) -> Any:
        # The deployed writer, a process of its own, on an endpoint nobody listens on.
        settings = gateway_settings(aws_max_attempts=1)
        return replace(deps, log_writer=ProcessWriter(settings, 30, endpoint_url="http://127.0.0.1:9"))

    gateway = await start_gateway(
        inject=unreachable,
        gateway_message_log_flush_s=FLUSH_S,
        gateway_message_log_max_bytes=16 * 1024,
        gateway_charger_frames_per_s=0,  # a burst of 400: the frame budget is not under test
    )
    charger = seed_charger()
    async with charger_session(gateway, charger, V16) as cp:
        await wait_held(gateway, charger, registry)
        # Each answer within the charger's own 5 s response timeout, or the call raises.
        for _ in range(400):
            answer = await cp.call(call16.Heartbeat())
            assert answer.current_time
    log = gateway.message_log
    assert log is not None
    await wait_until(lambda: log.counters["writeFailures"] >= 1, limit_s=20, what="a failed write of the log")
    assert log.counters["dropped"] > 0
    assert log.counters["logged"] + log.counters["dropped"] == 400
    assert log.buffered_bytes <= 16 * 1024
    warnings = [r.getMessage() for r in caplog.records if r.name == "evreserve_gateway.traffic"]
    assert any("dropping new messages" in w for w in warnings), warnings


async def test_a_writer_process_that_dies_is_replaced(gateway_settings, dynamodb_client):
    """The writer process killed between batches: that batch fails as storage unavailable, the next is stored."""
    settings = gateway_settings()
    writer = ProcessWriter(settings, 30)
    try:
        await writer.start()
        batch = Batch(
            secrets.token_hex(6),
            2_100_000_000,
            1,
            "CP-W",
            "ocpp1.6",
            [(1_765_000_000_000, 0, "Heartbeat", '[2,"a","Heartbeat",{}]', '[3,"a",{}]')],
        )
        assert await writer.put([batch]) == []
        (process,) = writer._pool()._processes.values()  # the pool's one worker
        process.kill()
        process.join(10)
        with pytest.raises(DependencyUnavailable):
            await writer.put([batch])
        again = replace(batch, batch_id=secrets.token_hex(6))
        assert await writer.put([again]) == []
        stored = dynamodb_client.query(
            TableName=settings.ocpp_messages_table,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "C#2100000000"}},
        )["Items"]
        assert {i["sk"]["S"].split("#")[1] for i in stored} >= {batch.batch_id, again.batch_id}
        (replacement,) = writer._pool()._processes.values()
    finally:
        writer.shutdown()
    # Nothing outlives the writer's shutdown (a lingering worker held the gateway's stdout open).
    assert not replacement.is_alive()
