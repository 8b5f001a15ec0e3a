"""Bad input is answered 400 (or 401 / 409 / 503), never 5xx: the local API over the real local stack.

Each case is one an adversarial partner sent and got a 500 for (issue "Every answer
true under faults", defect 6).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from devstack.local_api import LocalApi
from evreserve.models import Connection, ConnectionState, Reservation, ReservationState, utcnow
from evreserve.storage.codec import to_item
from evreserve.storage.items import reservation_item
from evreserve.storage.paging import encode_cursor
from evreserve.storage.registry import RegistryStore
from evreserve.storage.reservations import ReservationStore
from evreserve_lambda.wiring import use_services


@pytest.fixture
async def http(local_api: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=local_api.url, timeout=40) as client:
        yield client


@pytest.fixture
async def account(http: httpx.AsyncClient, admin_api_key: str) -> tuple[int, str]:
    """A new account's id and key, made through the admin endpoints."""
    admin = {"Authorization": f"Bearer {admin_api_key}"}
    created = await http.post("/api/admin/accounts", json={"name": "bad-input"}, headers=admin)
    account_id = int(created.json()["data"]["id"])
    issued = await http.post(f"/api/admin/accounts/{account_id}/api-keys", json={"name": "k"}, headers=admin)
    return account_id, str(issued.json()["data"]["apiKey"])


@pytest.fixture
def key(account: tuple[int, str]) -> str:
    return account[1]


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


def future(hours: float = 2) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


def _reserve(**fields: Any) -> dict[str, Any]:
    return {"portId": 1, "expiryDate": future(), "idTag": "RFID001", "reservationId": 1, **fields}


def _assert_400(answer: httpx.Response) -> None:
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["code"] == "INVALID_REQUEST" and body["error"]


async def test_deeply_nested_body_is_400(http: httpx.AsyncClient, key: str) -> None:
    """A body nested 50,000 deep is not JSON the API takes: 400, not a RecursionError 500."""
    body = '{"portId":' + "[" * 50_000 + "]" * 50_000 + "}"
    _assert_400(await http.post("/api/ocpp/reservations", content=body, headers=_bearer(key)))


async def test_huge_integer_is_400(http: httpx.AsyncClient, key: str) -> None:
    """A 5,000-digit integer (past Python's int-parsing limit) is 400, not a ValueError 500."""
    body = json.dumps(_reserve()).replace('"portId": 1', '"portId": ' + "9" * 5000)
    _assert_400(await http.post("/api/ocpp/reservations", content=body, headers=_bearer(key)))


@pytest.mark.parametrize(
    "expiry",
    [
        "9999-12-31T23:59:59-23:59",  # past year 9999 once in UTC: an OverflowError
        "9999-12-31T23:59:59Z",  # valid but absurd: beyond the longest reservation
        "2100-01-01T00:00:00Z",
    ],
)
async def test_expiry_beyond_the_longest_reservation_is_400(http: httpx.AsyncClient, key: str, expiry: str) -> None:
    """expiryDate has an upper bound (RESERVATION_MAX_DAYS, one year by default), and overflow is 400."""
    answer = await http.post("/api/ocpp/reservations", json=_reserve(expiryDate=expiry), headers=_bearer(key))
    _assert_400(answer)
    assert any(detail["field"] == "expiryDate" for detail in answer.json()["details"])


def _raw_cursor(data: dict[str, str]) -> str:
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursors(account_id: int) -> list[str]:
    own = f"ACCOUNT#{account_id}"
    return [
        "not-a-cursor",
        _raw_cursor({}),
        # The caller's own partition, but only some of the key attributes DynamoDB needs.
        _raw_cursor({"pk": own}),
        _raw_cursor({"gsi1pk": f"{own}#CHARGERS"}),
        _raw_cursor({"pk": own, "gsi1pk": "x", "gsi1sk": "y"}),
        encode_cursor({"pk": {"S": own}, "sk": {"S": "RES#0000000001"}})[:-3],  # truncated
    ]


async def test_forged_or_truncated_cursor_is_400(http: httpx.AsyncClient, account: tuple[int, str]) -> None:
    """A cursor the API did not issue for this query is 400 on every listing, never a DynamoDB error."""
    account_id, key = account
    for cursor in _cursors(account_id):
        for path in ("/api/ocpp/reservations", "/api/chargers"):
            answer = await http.get(path, params={"nextPageCursor": cursor}, headers=_bearer(key))
            _assert_400(answer)


async def test_authorizer_during_a_dynamodb_outage_is_503(local_aws: Any) -> None:
    """DynamoDB unreachable: the authorizer cannot check the key. The answer is 503 SERVICE_UNAVAILABLE with
    Retry-After (gateway response AUTHORIZER_FAILURE), not a 500, and nothing of it is cached."""
    use_services(None)  # the functions build their clients anew, on the broken endpoint
    try:
        with LocalApi(port=0, environment={"AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:1"}) as api:
            async with httpx.AsyncClient(base_url=api.url, timeout=40) as client:
                for _ in range(2):  # the second is not served from a cached verdict
                    answer = await client.get("/api/chargers", headers=_bearer("evr_anything_at_all"))
                    assert answer.status_code == 503, answer.text
                    assert answer.json()["code"] == "SERVICE_UNAVAILABLE"
                    assert answer.headers["Retry-After"] == "5"
            assert api.gateway.authorizer_calls == 2
    finally:
        use_services(None)


async def test_conflict_reveals_nothing_of_a_charger_outside_the_keys_scope(
    http: httpx.AsyncClient, account: tuple[int, str], admin_api_key: str, local_aws: Any
) -> None:
    """A key limited to charger A reserves an id held on charger B: 409 RESERVATION_ID_CONFLICT, with
    nothing of B (its id, identity, port) nor that the holder is on another port."""
    account_id, owner = account
    chargers = []
    for name in ("A", "B"):
        body = {"ocppId": f"SCOPE-{name}-{uuid.uuid4().hex[:8]}", "ports": [{"portNumber": 1}]}
        answer = await http.post("/api/chargers", json=body, headers=_bearer(owner))
        chargers.append(answer.json()["data"])
    a, b = chargers
    admin = _bearer(admin_api_key)
    limited = await http.post(
        f"/api/admin/accounts/{account_id}/api-keys", json={"name": "a-only", "chargerIds": [a["id"]]}, headers=admin
    )
    limited_key = limited.json()["data"]["apiKey"]
    registry = RegistryStore(local_aws.dynamodb.client(), local_aws.resources["REGISTRY_TABLE"])
    reservations = ReservationStore(local_aws.dynamodb.client(), local_aws.resources["RESERVATIONS_TABLE"])
    now = utcnow()
    for charger in (a, b):  # connected, as far as the registry knows (no command is sent here)
        connection = Connection(
            state=ConnectionState.CONNECTED, timestamp=now, session_id="s", instance_id="i", queue_url="http://q"
        )
        registry.register_connection(charger["id"], connection)
    held = Reservation(
        account_id=account_id,
        reservation_id=4242,
        charger_id=b["id"],
        port_id=b["ports"][0]["id"],
        port_number=1,
        id_tag="OTHER",
        expiry_date=now + timedelta(hours=1),
        state=ReservationState.ACCEPTED,
        created_at=now,
        updated_at=now,
        command_id="held-by-b",
    )
    reservations._client.put_item(TableName=reservations.table, Item=to_item(reservation_item(held)))

    request = _reserve(portId=a["ports"][0]["id"], reservationId=4242, expiryDate=future())
    for key in (limited_key, owner):
        answer = await http.post("/api/ocpp/reservations", json=request, headers=_bearer(key))
        assert answer.status_code == 409, answer.text
        assert answer.json()["code"] == "RESERVATION_ID_CONFLICT"
        body = answer.json()
        assert set(body) == {"error", "code", "reservationId"}
        assert "port" not in body["error"] and "charger" not in body["error"]
        for secret in (b["ocppId"], "OTHER", "held-by-b"):
            assert secret not in answer.text


async def test_idempotency_key_header_is_validated(http: httpx.AsyncClient, key: str) -> None:
    """An Idempotency-Key over 64 characters, or with blanks, is 400; a valid one (any header case) is taken."""
    body = _reserve(portId=2_000_000_000, expiryDate=future())
    for bad in ("k" * 65, "two words"):
        answer = await http.post("/api/ocpp/reservations", json=body, headers=_bearer(key) | {"Idempotency-Key": bad})
        _assert_400(answer)
    for name in ("Idempotency-Key", "idempotency-key"):
        answer = await http.post("/api/ocpp/reservations", json=body, headers=_bearer(key) | {name: "order-1"})
        assert answer.status_code == 404, answer.text  # validated, then the unknown port
