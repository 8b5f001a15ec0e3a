"""Every endpoint over HTTP through the local API (template.yaml, authorizer included),
with the real local DynamoDB/SQS and, for reservations, a real gateway holding real
WebSocket chargers (OCPP 1.6 and 2.0.1).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fixtures.gateway_fixtures import PASSWORD, Behaviour, charger_session, wait_held

from evreserve.models import OcppVersion

pytestmark = pytest.mark.integration

V16, V201 = OcppVersion.V16, OcppVersion.V201


def future(hours: float = 2) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


@pytest.fixture
async def http(local_api: Any) -> AsyncIterator[httpx.AsyncClient]:
    # Async: the gateway under test runs on this test's event loop and must keep running
    # while a request waits for the charger's answer.
    async with httpx.AsyncClient(base_url=local_api.url, timeout=40) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def account(http: httpx.AsyncClient, admin_api_key: str) -> dict[str, Any]:
    """A fresh account and its unlimited key, made through the admin endpoints."""
    created = await http.post("/api/admin/accounts", json={"name": "it"}, headers=bearer(admin_api_key))
    assert created.status_code == 201, created.text
    account_id = created.json()["data"]["id"]
    key = await http.post(
        f"/api/admin/accounts/{account_id}/api-keys", json={"name": "all"}, headers=bearer(admin_api_key)
    )
    assert key.status_code == 201, key.text
    return {"id": account_id, "key": key.json()["data"]["apiKey"]}


async def register(http: httpx.AsyncClient, key: str, version: OcppVersion | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ocppId": f"IT-{time.monotonic_ns()}",
        "password": PASSWORD,
        "ports": [{"portNumber": 1, "connectorType": "cType2"}, {"portNumber": 2}],
    }
    if version is not None:
        body["ocppVersion"] = version.value
    answer = await http.post("/api/chargers", json=body, headers=bearer(key))
    assert answer.status_code == 201, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


# -- auth ------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer evr_nope"}, {"Authorization": "Basic x"}])
async def test_missing_or_invalid_key_is_401(http: httpx.AsyncClient, headers: dict[str, str]):
    """No key, an unknown key, or not Bearer: 401 {"error": "Invalid API key"}."""
    answer = await http.get("/api/chargers", headers=headers)
    assert answer.status_code == 401
    assert answer.json() == {"error": "Invalid API key", "code": "INVALID_API_KEY"}


async def test_unknown_route_is_404(http: httpx.AsyncClient, account: dict[str, Any]):
    """A path the API does not have: 404 in the envelope."""
    answer = await http.get("/api/nothing-here", headers=bearer(account["key"]))
    assert answer.status_code == 404 and answer.json()["code"] == "NOT_FOUND"


async def test_openapi_is_served(http: httpx.AsyncClient, account: dict[str, Any]):
    """GET /api/openapi.json serves the generated document."""
    answer = await http.get("/api/openapi.json", headers=bearer(account["key"]))
    assert answer.status_code == 200 and "/api/ocpp/reservations/cancel" in answer.json()["paths"]


# -- admin -----------------------------------------------------------------------------------


async def test_admin_endpoints(http: httpx.AsyncClient, admin_api_key: str, account: dict[str, Any]):
    """Accounts and keys: list, create limited key, list keys (no secrets), revoke."""
    admin = bearer(admin_api_key)
    listed = (await http.get("/api/admin/accounts", params={"limit": 500}, headers=admin)).json()
    assert "pagination" in listed
    key = await http.post(
        f"/api/admin/accounts/{account['id']}/api-keys", json={"name": "none", "chargerIds": None}, headers=admin
    )
    key_id = key.json()["data"]["keyId"]
    keys = (await http.get(f"/api/admin/accounts/{account['id']}/api-keys", headers=admin)).json()["data"]
    assert key_id in {k["keyId"] for k in keys} and all("apiKey" not in k for k in keys)
    deleted = await http.delete(f"/api/admin/accounts/{account['id']}/api-keys/{key_id}", headers=admin)
    assert deleted.status_code == 204
    assert (
        await http.post("/api/admin/accounts", json={"name": "x"}, headers=bearer(account["key"]))
    ).status_code == 403


# -- chargers --------------------------------------------------------------------------------


async def test_charger_endpoints(http: httpx.AsyncClient, account: dict[str, Any]):
    """Register (password generated once), list, lookups, read, update, ports, delete."""
    h = bearer(account["key"])
    created = await http.post(
        "/api/chargers",
        json={
            "ocppId": f"IT-GEN-{time.monotonic_ns()}",
            "externalId": f"ext-{time.monotonic_ns()}",
            "ports": [{"portNumber": 1}],
        },
        headers=h,
    )
    assert created.status_code == 201 and len(created.json()["data"]["password"]) >= 16
    charger = created.json()["data"]
    cid = charger["id"]
    assert cid in [c["id"] for c in (await http.get("/api/chargers", headers=h)).json()["data"]]
    by_ocpp = (await http.get("/api/chargers", params={"ocppId": charger["ocppId"]}, headers=h)).json()["data"]
    by_ext = (await http.get("/api/chargers", params={"externalId": charger["externalId"]}, headers=h)).json()["data"]
    assert [c["id"] for c in by_ocpp] == [c["id"] for c in by_ext] == [cid]
    read = (await http.get(f"/api/chargers/{cid}", headers=h)).json()["data"]
    assert "password" not in read and read["connectionStatus"] is None
    updated = await http.patch(f"/api/chargers/{cid}", json={"serialNumber": "SN-1"}, headers=h)
    assert updated.json()["data"]["serialNumber"] == "SN-1"
    port = (await http.post(f"/api/chargers/{cid}/ports", json={"portNumber": 2}, headers=h)).json()["data"]
    patched = await http.patch(f"/api/chargers/{cid}/ports/{port['id']}", json={"name": "B"}, headers=h)
    assert patched.json()["data"]["name"] == "B"
    assert len((await http.get(f"/api/chargers/{cid}/ports", headers=h)).json()["data"]) == 2
    assert (await http.delete(f"/api/chargers/{cid}/ports/{port['id']}", headers=h)).status_code == 204
    assert (await http.delete(f"/api/chargers/{cid}", headers=h)).status_code == 204
    assert (await http.get(f"/api/chargers/{cid}", headers=h)).status_code == 404


async def test_scope_other_account_and_limited_key(
    http: httpx.AsyncClient, admin_api_key: str, account: dict[str, Any]
):
    """Another account's key and a key limited to other chargers get 404 for this charger."""
    charger = await register(http, account["key"])
    other = await http.post("/api/admin/accounts", json={"name": "other"}, headers=bearer(admin_api_key))
    other_id = other.json()["data"]["id"]
    other_key = (
        await http.post(f"/api/admin/accounts/{other_id}/api-keys", json={"name": "k"}, headers=bearer(admin_api_key))
    ).json()["data"]["apiKey"]
    second = await register(http, account["key"])
    limited = (
        await http.post(
            f"/api/admin/accounts/{account['id']}/api-keys",
            json={"name": "one", "chargerIds": [second["id"]]},
            headers=bearer(admin_api_key),
        )
    ).json()["data"]["apiKey"]
    body = {"portId": charger["ports"][0]["id"], "expiryDate": future(), "idTag": "T", "reservationId": 5}
    for key in (other_key, limited):
        assert (await http.get(f"/api/chargers/{charger['id']}", headers=bearer(key))).status_code == 404
        assert (await http.post("/api/ocpp/reservations", json=body, headers=bearer(key))).status_code == 404
        cancel = {"chargerId": charger["id"], "reservationId": 5}
        assert (await http.post("/api/ocpp/reservations/cancel", json=cancel, headers=bearer(key))).status_code == 404
    visible = (await http.get("/api/chargers", headers=bearer(limited))).json()["data"]
    assert [c["id"] for c in visible] == [second["id"]]


# -- reservations against real chargers ------------------------------------------------------


async def connected(http: httpx.AsyncClient, key: str, registry: Any, gateway: Any, version: OcppVersion):
    data = await register(http, key)
    charger = registry.get_charger(data["id"])
    return data, charger


@pytest.mark.parametrize("version", [V16, V201])
@pytest.mark.parametrize("status", ["Accepted", "Faulted", "Occupied", "Rejected", "Unavailable"])
async def test_reserve_statuses(http, account, registry, gateway, version, status):
    """Every status of the spec's table comes back from a real charger, both versions."""
    data, charger = await connected(http, account["key"], registry, gateway, version)
    behaviour = Behaviour(status=status)
    async with charger_session(gateway, charger, version, behaviour):
        await wait_held(gateway, charger, registry)
        body = {"portId": data["ports"][1]["id"], "expiryDate": future(), "idTag": "RFID001", "reservationId": 1001}
        if version is V201:
            body |= {"parentIdTag": "FLEET", "idTokenType": "ISO14443"}
        answer = await http.post("/api/ocpp/reservations", json=body, headers=bearer(account["key"]))
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"data": {"status": status}}
    action, payload = behaviour.received[0]
    assert action == "ReserveNow"
    if version is V16:
        assert payload["connector_id"] == 2 and payload["id_tag"] == "RFID001"
    else:
        assert payload["evse_id"] == 2 and payload["id_token"] == {"id_token": "RFID001", "type": "ISO14443"}
        assert payload["group_id_token"] == {"id_token": "FLEET", "type": "ISO14443"}


@pytest.mark.parametrize("version", [V16, V201])
async def test_cancel_statuses_and_lifecycle(http, account, registry, gateway, version):
    """Reserve, read it, list it, cancel (Accepted), retry cancel (no second command); Rejected passes through."""
    data, charger = await connected(http, account["key"], registry, gateway, version)
    h = bearer(account["key"])
    behaviour = Behaviour()
    async with charger_session(gateway, charger, version, behaviour):
        await wait_held(gateway, charger, registry)
        body = {"portId": data["ports"][0]["id"], "expiryDate": future(), "idTag": "A", "reservationId": 77}
        assert (await http.post("/api/ocpp/reservations", json=body, headers=h)).json()["data"]["status"] == "Accepted"
        record = (await http.get("/api/ocpp/reservations/77", headers=h)).json()["data"]
        assert record["status"] == "Accepted" and record["active"] is True
        listed = (
            await http.get("/api/ocpp/reservations", params={"chargerId": data["id"], "active": "true"}, headers=h)
        ).json()
        assert [r["reservationId"] for r in listed["data"]] == [77]
        cancel = {"chargerId": data["id"], "reservationId": 77}
        assert (await http.post("/api/ocpp/reservations/cancel", json=cancel, headers=h)).json() == {
            "data": {"status": "Accepted"}
        }
        assert (await http.post("/api/ocpp/reservations/cancel", json=cancel, headers=h)).status_code == 200
        assert [a for a, _ in behaviour.received] == ["ReserveNow", "CancelReservation"]
        record = (await http.get("/api/ocpp/reservations/77", headers=h)).json()["data"]
        assert record["status"] == "Cancelled" and record["endedAt"] is not None
        behaviour.status = "Rejected"
        unknown = {"chargerId": data["id"], "reservationId": 78}
        assert (await http.post("/api/ocpp/reservations/cancel", json=unknown, headers=h)).json() == {
            "data": {"status": "Rejected"}
        }


async def test_offline_charger_is_409(http, account, registry, gateway):
    """A registered charger that is not connected: 409 CHARGER_OFFLINE on reserve and cancel."""
    data = await register(http, account["key"])
    h = bearer(account["key"])
    body = {"portId": data["ports"][0]["id"], "expiryDate": future(), "idTag": "A", "reservationId": 1}
    answer = await http.post("/api/ocpp/reservations", json=body, headers=h)
    assert answer.status_code == 409 and answer.json()["code"] == "CHARGER_OFFLINE"
    cancel = await http.post(
        "/api/ocpp/reservations/cancel", json={"chargerId": data["id"], "reservationId": 1}, headers=h
    )
    assert cancel.status_code == 409 and cancel.json()["code"] == "CHARGER_OFFLINE"


@pytest.mark.parametrize("version", [V16, V201])
async def test_not_supported_is_rejected(http, account, registry, gateway, version):
    """A charger answering CALLERROR NotSupported to ReserveNow yields Rejected."""
    data, charger = await connected(http, account["key"], registry, gateway, version)
    async with charger_session(gateway, charger, version, Behaviour(mode="call_error")):
        await wait_held(gateway, charger, registry)
        body = {"portId": data["ports"][0]["id"], "expiryDate": future(), "idTag": "A", "reservationId": 3}
        answer = await http.post("/api/ocpp/reservations", json=body, headers=bearer(account["key"]))
        assert answer.json() == {"data": {"status": "Rejected"}}


async def test_cancel_call_error_is_502(http, account, registry, gateway):
    """A CALLERROR to CancelReservation is 502 CHARGER_ERROR with the OCPP code."""
    data, charger = await connected(http, account["key"], registry, gateway, V16)
    async with charger_session(gateway, charger, V16, Behaviour(mode="call_error")):
        await wait_held(gateway, charger, registry)
        cancel = {"chargerId": data["id"], "reservationId": 3}
        answer = await http.post("/api/ocpp/reservations/cancel", json=cancel, headers=bearer(account["key"]))
        assert answer.status_code == 502
        assert answer.json()["code"] == "CHARGER_ERROR" and answer.json()["ocppErrorCode"] == "NotSupported"


async def test_conflict_and_idempotent_retry(http, account, registry, gateway):
    """Same body twice: one ReserveNow; the same reservationId on the other port: 409 RESERVATION_ID_CONFLICT."""
    data, charger = await connected(http, account["key"], registry, gateway, V16)
    h = bearer(account["key"])
    behaviour = Behaviour()
    async with charger_session(gateway, charger, V16, behaviour):
        await wait_held(gateway, charger, registry)
        body = {"portId": data["ports"][0]["id"], "expiryDate": future(), "idTag": "A", "reservationId": 9}
        first = await http.post("/api/ocpp/reservations", json=body, headers=h)
        again = await http.post("/api/ocpp/reservations", json=body, headers=h)
        assert first.json() == again.json() == {"data": {"status": "Accepted"}}
        assert len(behaviour.received) == 1
        other = body | {"portId": data["ports"][1]["id"]}
        conflict = await http.post("/api/ocpp/reservations", json=other, headers=h)
        assert conflict.status_code == 409 and conflict.json()["code"] == "RESERVATION_ID_CONFLICT"
        assert len(behaviour.received) == 1


async def test_validation_is_400(http, account):
    """Invalid bodies: 400 INVALID_REQUEST with the fields named."""
    h = bearer(account["key"])
    answer = await http.post("/api/ocpp/reservations", json={"portId": 1, "idTag": "x" * 21, "extra": 1}, headers=h)
    assert answer.status_code == 400 and answer.json()["code"] == "INVALID_REQUEST"
    assert {"idTag", "extra", "expiryDate", "reservationId"} <= {d["field"] for d in answer.json()["details"]}


async def test_silent_charger_is_504(http, account, registry, gateway):
    """A charger that never answers: 504 CHARGER_TIMEOUT within API Gateway's 29 s."""
    data, charger = await connected(http, account["key"], registry, gateway, V16)
    async with charger_session(gateway, charger, V16, Behaviour(mode="silent")):
        await wait_held(gateway, charger, registry)
        body = {"portId": data["ports"][0]["id"], "expiryDate": future(), "idTag": "A", "reservationId": 4}
        started = time.monotonic()
        answer = await http.post("/api/ocpp/reservations", json=body, headers=bearer(account["key"]))
        assert answer.status_code == 504 and answer.json()["code"] == "CHARGER_TIMEOUT"
        assert time.monotonic() - started < 29
