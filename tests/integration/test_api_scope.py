"""Scope on every route: another account's key, a key limited to other chargers, the admin key.

The routes walked are the OpenAPI document's, checked against template.yaml's, so a new
route fails this test until someone decides what each kind of key gets from it. Every
answer must be the documented refusal (404 for what is outside the key's scope, 403 for
what the key may never do) or a success that shows none of the owner's data; afterwards
the owner's charger, ports, reservation and keys are as they were.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from devstack.local_api import LocalApi
from evreserve.models import Reservation, ReservationState, utcnow
from evreserve.storage.codec import to_item
from evreserve.storage.items import reservation_item
from evreserve.storage.registry import RegistryStore
from evreserve_lambda.openapi import bundled_document

pytestmark = pytest.mark.integration

METHODS = ("get", "post", "put", "patch", "delete")


@dataclass
class World:
    """Account A (the owner) with two chargers and a reservation; account B; their keys."""

    owner: str
    foreign: str
    limited: str  # A's key limited to A's second charger
    admin: str
    account_id: int
    key_id: str
    charger: dict[str, Any]  # A's first charger, outside the limited key's scope
    reservation: Reservation  # on that charger
    webhook_id: str  # A's webhook
    access_id: int  # A's driver token
    #: Strings that only A's first charger, its ports, its reservation and A's account carry.
    secrets: list[str]


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def world(local_api: LocalApi, admin_api_key: str, local_aws: Any) -> World:
    mark = secrets.token_hex(4)
    admin = _bearer(admin_api_key)
    with httpx.Client(base_url=local_api.url, timeout=30) as http:

        def ok(answer: httpx.Response) -> Any:
            assert answer.status_code in (200, 201), answer.text
            return answer.json()["data"]

        account = ok(http.post("/api/admin/accounts", json={"name": f"owner-{mark}"}, headers=admin))
        owner_key = ok(
            http.post(f"/api/admin/accounts/{account['id']}/api-keys", json={"name": f"k-{mark}"}, headers=admin)
        )
        charger = ok(
            http.post(
                "/api/chargers",
                json={
                    "ocppId": f"OWN-{mark}",
                    "externalId": f"ext-{mark}",
                    "serialNumber": f"sn-{mark}",
                    "password": "owner-password-16chars",
                    "ports": [{"portNumber": 1, "name": f"port-{mark}"}, {"portNumber": 2}],
                },
                headers=_bearer(owner_key["apiKey"]),
            )
        )
        second = ok(
            http.post(
                "/api/chargers",
                json={"ocppId": f"OWN2-{mark}", "ports": [{"portNumber": 1}]},
                headers=_bearer(owner_key["apiKey"]),
            )
        )
        limited = ok(
            http.post(
                f"/api/admin/accounts/{account['id']}/api-keys",
                json={"name": "limited", "chargerIds": [second["id"]]},
                headers=admin,
            )
        )
        webhook = ok(
            http.post(
                "/api/webhooks",
                json={"url": f"https://hooks.example.com/{mark}", "description": f"hook-{mark}"},
                headers=_bearer(owner_key["apiKey"]),
            )
        )
        access_id = ok(
            http.post(
                "/api/access-ids",
                json={"ocppIdTag": f"A{mark}", "type": "RFID", "parentIdTag": f"G{mark}", "name": f"driver-{mark}"},
                headers=_bearer(owner_key["apiKey"]),
            )
        )
        other = ok(http.post("/api/admin/accounts", json={"name": "foreign"}, headers=admin))
        foreign = ok(http.post(f"/api/admin/accounts/{other['id']}/api-keys", json={"name": "f"}, headers=admin))
    reservation = _store_reservation(local_aws, charger, f"T{mark}")
    return World(
        owner=owner_key["apiKey"],
        foreign=foreign["apiKey"],
        limited=limited["apiKey"],
        admin=admin_api_key,
        account_id=account["id"],
        key_id=owner_key["keyId"],
        charger=charger,
        reservation=reservation,
        webhook_id=webhook["id"],
        access_id=access_id["id"],
        secrets=[
            *(f"OWN-{mark}", f"ext-{mark}", f"sn-{mark}", f"port-{mark}", f"T{mark}", f"owner-{mark}", f"k-{mark}"),
            *(webhook["id"], webhook["secret"], f"hooks.example.com/{mark}", f"hook-{mark}"),
            *(f"A{mark}", f"G{mark}", f"driver-{mark}"),
        ],
    )


def _store_reservation(local_aws: Any, charger: dict[str, Any], id_tag: str) -> Reservation:
    """An accepted reservation on the charger's first port, written as the API would have."""
    client = local_aws.dynamodb.client()
    registry = RegistryStore(client, local_aws.resources["REGISTRY_TABLE"])
    now = utcnow()
    port = charger["ports"][0]
    reservation = Reservation(
        account_id=charger["accountId"] if "accountId" in charger else _account_of(registry, charger["id"]),
        reservation_id=registry.next_id("test-reservation"),
        charger_id=charger["id"],
        port_id=port["id"],
        port_number=port["portNumber"],
        id_tag=id_tag,
        expiry_date=now + timedelta(hours=1),
        state=ReservationState.ACCEPTED,
        created_at=now,
        updated_at=now,
        command_id=secrets.token_hex(8),
    )
    table = local_aws.resources["RESERVATIONS_TABLE"]
    client.put_item(TableName=table, Item=to_item(reservation_item(reservation)))
    return reservation


def _account_of(registry: RegistryStore, charger_id: int) -> int:
    stored = registry.get_charger(charger_id)
    assert stored is not None
    return stored.account_id


# What each route gets, by kind of key: (status for the foreign key, for the limited key,
# for the admin key). 200/201 means allowed on the caller's own data (checked for leaks).
EXPECTED: dict[tuple[str, str], tuple[int, int, int]] = {
    ("POST", "/api/ocpp/reservations"): (404, 404, 403),
    ("GET", "/api/ocpp/reservations"): (200, 200, 403),
    ("POST", "/api/ocpp/reservations/cancel"): (404, 404, 403),
    ("GET", "/api/ocpp/reservations/{reservationId}"): (404, 404, 403),
    ("POST", "/api/chargers"): (201, 403, 403),
    ("GET", "/api/chargers"): (200, 200, 403),
    ("GET", "/api/chargers/{chargerId}"): (404, 404, 404),
    ("PATCH", "/api/chargers/{chargerId}"): (404, 404, 404),
    ("DELETE", "/api/chargers/{chargerId}"): (404, 403, 403),
    ("GET", "/api/chargers/{chargerId}/ports"): (404, 404, 404),
    ("POST", "/api/chargers/{chargerId}/ports"): (404, 404, 404),
    ("PATCH", "/api/chargers/{chargerId}/ports/{portId}"): (404, 404, 404),
    ("DELETE", "/api/chargers/{chargerId}/ports/{portId}"): (404, 404, 404),
    ("POST", "/api/admin/accounts"): (403, 403, 201),
    ("GET", "/api/admin/accounts"): (403, 403, 200),
    ("GET", "/api/admin/accounts/{accountId}"): (403, 403, 200),
    ("PATCH", "/api/admin/accounts/{accountId}"): (403, 403, 200),
    ("POST", "/api/admin/accounts/{accountId}/api-keys"): (403, 403, 201),
    ("GET", "/api/admin/accounts/{accountId}/api-keys"): (403, 403, 200),
    ("DELETE", "/api/admin/accounts/{accountId}/api-keys/{keyId}"): (403, 403, 204),
    ("GET", "/api/openapi.json"): (200, 200, 200),
    # Open to anyone, key or not (template: Authorizer NONE): they describe the API, not its data.
    ("GET", "/api/docs"): (200, 200, 200),
    ("GET", "/api/docs/openapi.json"): (200, 200, 200),
    ("GET", "/api/docs/assets/{name}"): (200, 200, 200),
    ("GET", "/api/ocpp-messages"): (404, 404, 403),
    # A webhook gets every reservation of the account: only the account's whole keys manage them.
    ("POST", "/api/webhooks"): (201, 403, 403),
    ("GET", "/api/webhooks"): (200, 403, 403),
    ("GET", "/api/webhooks/{webhookId}"): (404, 403, 403),
    ("DELETE", "/api/webhooks/{webhookId}"): (404, 403, 403),
    ("GET", "/api/webhooks/{webhookId}/deliveries"): (404, 403, 403),
    # A token may charge at every charger of the account: only its whole keys manage them.
    ("POST", "/api/access-ids"): (201, 403, 403),
    ("GET", "/api/access-ids"): (200, 403, 403),
    ("GET", "/api/access-ids/{id}"): (404, 403, 403),
    ("PATCH", "/api/access-ids/{id}"): (404, 403, 403),
    ("DELETE", "/api/access-ids/{id}"): (404, 403, 403),
}

#: Variants of a route that look things up another way (query parameters).
LOOKUPS: dict[tuple[str, str], list[Callable[[World], dict[str, Any]]]] = {
    # Another account asking for the owner's idTag or group by name finds nothing.
    ("GET", "/api/access-ids"): [
        lambda w: {},
        lambda w: {"ocppIdTag": w.secrets[-3]},
        lambda w: {"parentIdTag": w.secrets[-2]},
    ],
    ("GET", "/api/chargers"): [
        lambda w: {},
        lambda w: {"ocppId": w.charger["ocppId"]},
        lambda w: {"externalId": w.charger["externalId"]},
        lambda w: {"limit": 500},
    ],
    ("GET", "/api/ocpp/reservations"): [
        lambda w: {},
        lambda w: {"portId": w.charger["ports"][0]["id"]},
        lambda w: {"status": "Accepted", "active": "true"},
    ],
    ("GET", "/api/ocpp-messages"): [
        lambda w: {"chargerId": w.charger["id"]},
        lambda w: {"chargerId": w.charger["id"], "messageType": "Heartbeat", "limit": 500},
    ],
}
#: The chargerId filter names the foreign charger itself: refused like a read of it.
CHARGER_FILTER = ("GET", "/api/ocpp/reservations")


def document_routes() -> set[tuple[str, str]]:
    paths: dict[str, Any] = bundled_document()["paths"]
    return {(method.upper(), path) for path, item in paths.items() for method in item if method in METHODS}


def template_routes(api: LocalApi) -> set[tuple[str, str]]:
    assert api.definition is not None
    return {(route.method, route.path) for route in api.definition.routes}


def _path(world: World, template: str) -> str:
    values = {
        "chargerId": world.charger["id"],
        "portId": world.charger["ports"][0]["id"],
        "reservationId": world.reservation.reservation_id,
        "accountId": world.account_id,
        "keyId": world.key_id,
        "webhookId": world.webhook_id,
        "id": world.access_id,
        "name": "swagger-ui.min.css",
    }
    for name, value in values.items():
        template = template.replace("{" + name + "}", str(value))
    return template


def _body(world: World, method: str, path: str) -> dict[str, Any] | None:
    """A valid body for the route, aimed at the owner's resources where it names any."""
    port = world.charger["ports"][0]
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/api/ocpp/reservations"): {
            "portId": port["id"],
            "expiryDate": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
            "idTag": "INTRUDER",
            "reservationId": world.reservation.reservation_id,
        },
        ("POST", "/api/ocpp/reservations/cancel"): {
            "chargerId": world.charger["id"],
            "reservationId": world.reservation.reservation_id,
        },
        ("POST", "/api/chargers"): {"ocppId": f"INTRUDER-{secrets.token_hex(4)}", "ports": [{"portNumber": 1}]},
        ("PATCH", "/api/chargers/{chargerId}"): {"serialNumber": "INTRUDER", "password": "intruder-password-16"},
        ("POST", "/api/chargers/{chargerId}/ports"): {"portNumber": 9},
        ("PATCH", "/api/chargers/{chargerId}/ports/{portId}"): {"name": "INTRUDER"},
        ("POST", "/api/admin/accounts"): {"name": "intruder"},
        ("POST", "/api/admin/accounts/{accountId}/api-keys"): {"name": "intruder"},
        ("POST", "/api/webhooks"): {"url": "https://intruder.example.com/hooks"},
        ("PATCH", "/api/admin/accounts/{accountId}"): {"unknownIdTags": "Accepted"},
        ("POST", "/api/access-ids"): {"ocppIdTag": f"INTRUDER-{secrets.token_hex(4)}", "type": "RFID"},
        ("PATCH", "/api/access-ids/{id}"): {"authorizationStatus": "Revoked", "name": "INTRUDER"},
    }
    return bodies.get((method, path))


def test_the_document_lists_exactly_the_templates_routes(local_api: LocalApi):
    """The walk below covers every deployed route: the OpenAPI document and template.yaml agree."""
    assert document_routes() == template_routes(local_api)
    assert set(EXPECTED) == document_routes(), "decide what each kind of key gets from a new route"


@pytest.mark.parametrize("who", ["foreign", "limited", "admin"])
def test_every_route_refuses_or_shows_nothing_of_the_owner(local_api: LocalApi, world: World, who: str):
    """Each route, with another account's / a limited / the admin key: the documented status, no owner data."""
    key = getattr(world, who)
    column = ("foreign", "limited", "admin").index(who)
    # Deletions last, so that a wrongly allowed one cannot hide what the others would do.
    routes = sorted(EXPECTED, key=lambda route: (route[0] == "DELETE", route))
    seen: list[str] = []
    with httpx.Client(base_url=local_api.url, timeout=30, headers=_bearer(key)) as http:
        for method, template in routes:
            if who == "admin" and template.startswith("/api/admin/accounts/{accountId}/api-keys/"):
                continue  # the admin may revoke the owner's key: checked by the admin tests, not here
            variants = LOOKUPS.get((method, template), [lambda w: {}])
            for params in variants:
                answer = http.request(
                    method,
                    _path(world, template),
                    params=params(world),
                    json=_body(world, method, template),
                )
                expected = EXPECTED[(method, template)][column]
                assert answer.status_code == expected, (who, method, template, params(world), answer.text)
                if answer.status_code >= 400:
                    assert set(answer.json()) >= {"error", "code"}
                if who != "admin":
                    for secret in world.secrets:
                        assert secret not in answer.text, (who, method, template, secret)
                seen.append(f"{method} {template}")
        if (CHARGER_FILTER in EXPECTED) and who != "admin":
            answer = http.get("/api/ocpp/reservations", params={"chargerId": world.charger["id"]})
            assert answer.status_code == 404, answer.text
    assert {s.split(" ", 1)[1] for s in seen} >= {t for _, t in EXPECTED if not t.endswith("{keyId}")}


def test_the_owner_still_has_everything(local_api: LocalApi, world: World):
    """After the walks: the owner's charger, both ports, its reservation and its key are unchanged."""
    with httpx.Client(base_url=local_api.url, timeout=30, headers=_bearer(world.owner)) as http:
        charger = http.get(f"/api/chargers/{world.charger['id']}").json()["data"]
        assert charger["serialNumber"] == world.charger["serialNumber"]
        assert [p["id"] for p in charger["ports"]] == [p["id"] for p in world.charger["ports"]]
        assert charger["ports"][0]["name"] == world.charger["ports"][0]["name"]
        reservation = http.get(f"/api/ocpp/reservations/{world.reservation.reservation_id}").json()["data"]
        assert reservation["status"] == "Accepted" and reservation["idTag"] == world.reservation.id_tag
        keys = http.get(f"/api/admin/accounts/{world.account_id}/api-keys").json()["data"]
        assert world.key_id in {k["keyId"] for k in keys}
        assert "INTRUDER" not in json.dumps(charger)
        webhook = http.get(f"/api/webhooks/{world.webhook_id}").json()["data"]
        assert webhook["id"] == world.webhook_id and "intruder" not in webhook["url"]
        token = http.get(f"/api/access-ids/{world.access_id}").json()["data"]
        assert (token["authorizationStatus"], token["name"]) == ("Authorized", world.secrets[-1])
