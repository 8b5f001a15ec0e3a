"""The API functions end to end in-process: events/*.json -> handler -> DynamoDB (moto) + fake gateway.

Every sample event in events/ is exercised here (test_every_sample_event_is_exercised).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from api_harness import (
    ACCOUNT_ID,
    ACCOUNT_KEY,
    CHARGER_ID,
    EVENTS,
    OCPP_ID,
    OTHER_ACCOUNT_ID,
    PORT_ID,
    SECOND_PORT_ID,
    LambdaContext,
    Stack,
    add_other_account,
    call_error,
    future,
    invoke,
    load_event,
    no_answer,
    principal_context,
    result,
    seed,
    start_stack,
)
from fixtures.certs import issue, make_ca
from fixtures.functions import load_function

from evreserve.client_certs import fingerprint
from evreserve.models import OcppVersion, OutcomeKind
from evreserve.security import verify_password
from evreserve.storage.messages import Batch, MessageLogStore
from evreserve.webhooks import DeliveryRecord, DeliveryStatus
from evreserve_lambda import app as glue


def event(name: str, **kwargs: Any) -> dict[str, Any]:
    return load_event(name, **kwargs)


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    for stack in start_stack(monkeypatch):
        glue.use_services(stack.services)
        yield stack
    glue.use_services(None)


@pytest.fixture(scope="module")
def fn() -> dict[str, Any]:
    names = ("authorizer", "reservations", "chargers", "messages", "webhooks", "access_ids", "admin", "docs")
    return {name: load_function(name) for name in names}


def with_query(request: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
    """The same request with another query string (REST events carry it twice)."""
    return request | {
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()},
    }


def reserve_body(**changes: Any) -> dict[str, Any]:
    return {"portId": PORT_ID, "expiryDate": future(), "idTag": "RFID001", "reservationId": 1001, **changes}


# -- reservations -------------------------------------------------------------------------


@pytest.mark.parametrize("version", [OcppVersion.V16, OcppVersion.V201])
@pytest.mark.parametrize("status", ["Accepted", "Faulted", "Occupied", "Rejected", "Unavailable"])
def test_reserve_answers_the_chargers_status(stack: Stack, fn: dict[str, Any], version: OcppVersion, status: str):
    """POST /api/ocpp/reservations answers {"data": {"status"}} with the charger's own status."""
    seed(stack, version=version)
    stack.gateway.answer = result(status)
    assert invoke(fn["reservations"].handler, event("reserve.json")) == (200, {"data": {"status": status}})
    sent = stack.gateway.sent[0]
    assert sent.action == "ReserveNow"
    assert ("connectorId" in sent.payload) is (version is OcppVersion.V16)


def test_reserve_sends_the_version_mapping(stack: Stack, fn: dict[str, Any]):
    """A 2.0.1 charger gets evseId, idToken with idTokenType, and parentIdTag as groupIdToken."""
    seed(stack, version=OcppVersion.V201)
    body = reserve_body(parentIdTag="FLEET", idTokenType="ISO14443")
    assert invoke(fn["reservations"].handler, event("reserve.json", body=body))[0] == 200
    payload = stack.gateway.sent[0].payload
    assert payload["evseId"] == 1 and payload["id"] == 1001
    assert payload["groupIdToken"] == {"idToken": "FLEET", "type": "ISO14443"}


def whole_charger_body(**changes: Any) -> dict[str, Any]:
    body = reserve_body(**changes)
    body.pop("portId")
    return {"chargerId": CHARGER_ID, **body}


@pytest.mark.parametrize("version", [OcppVersion.V16, OcppVersion.V201])
def test_a_whole_charger_reservation_is_sent_without_a_port_and_recorded_without_one(
    stack: Stack, fn: dict[str, Any], version: OcppVersion
):
    """chargerId instead of portId: 1.6 ReserveNow connectorId 0, 2.0.1 without evseId; the record has portId
    null, and lists like any other."""
    seed(stack, version=version)
    assert invoke(fn["reservations"].handler, event("reserve.json", body=whole_charger_body())) == (
        200,
        {"data": {"status": "Accepted"}},
    )
    payload = stack.gateway.sent[0].payload
    if version is OcppVersion.V16:
        assert payload["connectorId"] == 0
    else:
        assert "evseId" not in payload and payload["id"] == 1001
    status, shown = invoke(fn["reservations"].handler, event("get-reservation.json"))
    assert status == 200 and (shown["data"]["portId"], shown["data"]["portNumber"]) == (None, None)
    assert shown["data"]["chargerId"] == CHARGER_ID and shown["data"]["status"] == "Accepted"
    listed = invoke(fn["reservations"].handler, event("list-reservations.json"))[1]["data"]
    assert [r["reservationId"] for r in listed] == [1001]
    # The same reservationId again on a port of the charger: refused while the whole-charger one holds.
    status, answer = invoke(fn["reservations"].handler, event("reserve.json"))
    assert (status, answer["code"]) == (409, "RESERVATION_ID_CONFLICT")
    # ... and again for the whole charger: the charger replaces it, as OCPP says.
    assert invoke(fn["reservations"].handler, event("reserve.json", body=whole_charger_body()))[0] == 200


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({**reserve_body(), "chargerId": CHARGER_ID}, 400, "INVALID_REQUEST"),
        ({**reserve_body(), "portId": None}, 400, "INVALID_REQUEST"),
        (whole_charger_body(chargerId=0), 400, "INVALID_REQUEST"),
        (whole_charger_body(chargerId=str(CHARGER_ID)), 400, "INVALID_REQUEST"),
        (whole_charger_body(chargerId=99), 404, "NOT_FOUND"),
    ],
)
def test_a_reservation_names_exactly_one_place_that_is_the_callers(stack: Stack, fn, body, status, code):
    seed(stack)
    answer = invoke(fn["reservations"].handler, event("reserve.json", body=body))
    assert (answer[0], answer[1]["code"]) == (status, code), answer
    assert stack.gateway.sent == []


def test_a_whole_charger_reservation_is_refused_outside_the_keys_scope(stack: Stack, fn):
    seed(stack)
    for context in (principal_context(charger_ids=[999]), principal_context(OTHER_ACCOUNT_ID)):
        request = event("reserve.json", body=whole_charger_body(), context=context)
        assert invoke(fn["reservations"].handler, request)[1]["code"] == "NOT_FOUND"
    assert stack.gateway.sent == []


@pytest.mark.parametrize("code", ["NotImplemented", "NotSupported"])
def test_reserve_without_reservation_support_is_rejected(stack: Stack, fn: dict[str, Any], code: str):
    """A charger answering CALLERROR NotImplemented/NotSupported yields Rejected."""
    seed(stack)
    stack.gateway.answer = call_error(code)
    assert invoke(fn["reservations"].handler, event("reserve.json")) == (200, {"data": {"status": "Rejected"}})


def test_reserve_other_call_error_is_502(stack: Stack, fn: dict[str, Any]):
    """Another CALLERROR is 502 CHARGER_ERROR with the OCPP code."""
    seed(stack)
    stack.gateway.answer = call_error("InternalError")
    status, body = invoke(fn["reservations"].handler, event("reserve.json"))
    assert status == 502 and body["code"] == "CHARGER_ERROR" and body["ocppErrorCode"] == "InternalError"


def test_reserve_timeout_is_504_and_recorded_failed(stack: Stack, fn: dict[str, Any]):
    """No answer in time is 504 CHARGER_TIMEOUT; the record shows Failed with that code."""
    seed(stack)
    stack.gateway.answer = no_answer(OutcomeKind.TIMEOUT)
    status, body = invoke(fn["reservations"].handler, event("reserve.json"))
    assert (status, body["code"]) == (504, "CHARGER_TIMEOUT")
    _, record = invoke(fn["reservations"].handler, event("get-reservation.json"))
    assert record["data"]["status"] == "Failed" and record["data"]["failureCode"] == "CHARGER_TIMEOUT"


def test_reserve_on_offline_charger_is_409(stack: Stack, fn: dict[str, Any]):
    """A charger that is not connected: 409 CHARGER_OFFLINE, nothing sent."""
    seed(stack, connected=False)
    status, body = invoke(fn["reservations"].handler, event("reserve.json"))
    assert (status, body["code"]) == (409, "CHARGER_OFFLINE") and stack.gateway.sent == []


def test_charger_leaving_mid_command_is_409(stack: Stack, fn: dict[str, Any]):
    """The gateway reporting the charger gone (offline outcome) is 409 CHARGER_OFFLINE too."""
    seed(stack)
    stack.gateway.answer = no_answer(OutcomeKind.OFFLINE)
    status, body = invoke(fn["reservations"].handler, event("reserve.json"))
    assert (status, body["code"]) == (409, "CHARGER_OFFLINE")


def test_identical_retry_sends_no_second_command(stack: Stack, fn: dict[str, Any]):
    """The same body again gets the same outcome from the first command."""
    seed(stack)
    first = invoke(fn["reservations"].handler, event("reserve.json"))
    stack.gateway.answer = result("Occupied")  # would differ if it were sent again
    assert invoke(fn["reservations"].handler, event("reserve.json")) == first
    assert len(stack.gateway.sent) == 1


def test_retry_after_timeout_sends_again(stack: Stack, fn: dict[str, Any]):
    """A retry of a request the charger never answered is sent again (safe: same id replaces)."""
    seed(stack)
    stack.gateway.answer = no_answer()
    assert invoke(fn["reservations"].handler, event("reserve.json"))[0] == 504
    stack.gateway.answer = result("Accepted")
    assert invoke(fn["reservations"].handler, event("reserve.json")) == (200, {"data": {"status": "Accepted"}})
    assert len(stack.gateway.sent) == 2


def test_cancel_then_reserve_again_sends_each(stack: Stack, fn: dict[str, Any]):
    """reserve, cancel, the same reserve, cancel: four commands; a cancel retry is deduplicated."""
    seed(stack)
    handler = fn["reservations"].handler
    assert invoke(handler, event("reserve.json"))[0] == 200
    assert invoke(handler, event("cancel.json")) == (200, {"data": {"status": "Accepted"}})
    assert invoke(handler, event("cancel.json"))[0] == 200
    assert len(stack.gateway.sent) == 2
    _, record = invoke(handler, event("get-reservation.json"))
    assert record["data"]["status"] == "Cancelled" and record["data"]["active"] is False
    assert invoke(handler, event("reserve.json"))[0] == 200
    assert invoke(handler, event("cancel.json"))[0] == 200
    assert [c.action for c in stack.gateway.sent] == ["ReserveNow", "CancelReservation"] * 2


def test_cancel_rejected_by_charger(stack: Stack, fn: dict[str, Any]):
    """The charger's Rejected (unknown reservation) is passed through."""
    seed(stack)
    stack.gateway.answer = result("Rejected")
    assert invoke(fn["reservations"].handler, event("cancel.json")) == (200, {"data": {"status": "Rejected"}})


def test_reservation_id_active_on_another_port_is_409(stack: Stack, fn: dict[str, Any]):
    """reservationId accepted on one port and sent for the other: 409 RESERVATION_ID_CONFLICT."""
    seed(stack)
    handler = fn["reservations"].handler
    assert invoke(handler, event("reserve.json", body=reserve_body()))[0] == 200
    status, body = invoke(handler, event("reserve.json", body=reserve_body(portId=SECOND_PORT_ID)))
    assert (status, body["code"]) == (409, "RESERVATION_ID_CONFLICT")
    assert len(stack.gateway.sent) == 1


def test_same_reservation_id_on_same_port_replaces(stack: Stack, fn: dict[str, Any]):
    """The same reservationId on the same port with another idTag is a replacement (OCPP), sent."""
    seed(stack)
    handler = fn["reservations"].handler
    assert invoke(handler, event("reserve.json", body=reserve_body()))[0] == 200
    assert invoke(handler, event("reserve.json", body=reserve_body(idTag="OTHER")))[0] == 200
    _, record = invoke(handler, event("get-reservation.json"))
    assert record["data"]["idTag"] == "OTHER" and len(stack.gateway.sent) == 2


def test_reservation_id_reusable_after_it_ended(stack: Stack, fn: dict[str, Any]):
    """Once cancelled, the reservationId may go to another port."""
    seed(stack)
    handler = fn["reservations"].handler
    assert invoke(handler, event("reserve.json"))[0] == 200
    assert invoke(handler, event("cancel.json"))[0] == 200
    assert invoke(handler, event("reserve.json", body=reserve_body(portId=SECOND_PORT_ID)))[0] == 200


def test_validation_errors_are_400_envelopes(stack: Stack, fn: dict[str, Any]):
    """Invalid body: 400 INVALID_REQUEST naming each field (not Powertools' 422)."""
    seed(stack)
    status, body = invoke(fn["reservations"].handler, event("reserve.json", body={"portId": "x", "idTag": "a" * 21}))
    assert status == 400 and body["code"] == "INVALID_REQUEST"
    assert {d["field"] for d in body["details"]} == {"portId", "idTag", "expiryDate", "reservationId"}
    status, body = invoke(fn["reservations"].handler, event("reserve.json", body="{nope"))
    assert (status, body["code"]) == (400, "INVALID_REQUEST")


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "multipart/form-data", "application/x-www-form-urlencoded", "application/xml", "application/x+json"],
)
def test_body_that_is_not_json_by_its_content_type_is_400(stack: Stack, fn: dict[str, Any], content_type: str):
    """A body sent as anything but JSON: 400 naming the header (text/plain, multipart were unhandled 500s)."""
    seed(stack)
    request = event("reserve.json", body=reserve_body())
    request["headers"] = {**request["headers"], "Content-Type": content_type}
    request["multiValueHeaders"] = {**request["multiValueHeaders"], "Content-Type": [content_type]}
    status, body = invoke(fn["reservations"].handler, request)
    assert (status, body["code"]) == (400, "INVALID_REQUEST")
    assert body["details"] == [{"location": "header", "field": "Content-Type", "message": "must be application/json"}]
    assert stack.gateway.sent == []


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", None])
def test_json_content_types_are_taken(stack: Stack, fn: dict[str, Any], content_type: str | None):
    """JSON with parameters, or no Content-Type at all: the body is read as JSON."""
    seed(stack)
    request = event("reserve.json", body=reserve_body())
    headers = {k: v for k, v in request["headers"].items() if k.lower() != "content-type"}
    request["headers"] = headers if content_type is None else {**headers, "Content-Type": content_type}
    request["multiValueHeaders"] = {k: [v] for k, v in request["headers"].items()}
    status, body = invoke(fn["reservations"].handler, request)
    assert (status, body) == (200, {"data": {"status": "Accepted"}})


def test_unknown_port_and_foreign_port_look_the_same(stack: Stack, fn: dict[str, Any]):
    """A port of another account is 404 NOT_FOUND, exactly like a port that does not exist."""
    seed(stack)
    other = principal_context(OTHER_ACCOUNT_ID)
    foreign = invoke(fn["reservations"].handler, event("reserve.json", context=other))
    missing = invoke(fn["reservations"].handler, event("reserve.json", body=reserve_body(portId=999)))
    assert foreign == missing == (404, {"error": "Port not found", "code": "NOT_FOUND"})


def test_key_limited_to_other_chargers_gets_404(stack: Stack, fn: dict[str, Any]):
    """A key limited to chargers [99] cannot reserve, cancel, read or list the seeded charger's things."""
    seed(stack)
    assert invoke(fn["reservations"].handler, event("reserve.json"))[0] == 200
    limited = principal_context(ACCOUNT_ID, [99])
    for name in ("reserve.json", "cancel.json", "get-reservation.json", "list-reservations.json"):
        assert invoke(fn["reservations"].handler, event(name, context=limited))[0] == 404, name
    assert invoke(fn["chargers"].handler, event("get-charger.json", context=limited))[0] == 404


def test_listing_filters_and_paginates(stack: Stack, fn: dict[str, Any]):
    """GET /api/ocpp/reservations: filters, and a cursor that continues where the page ended."""
    seed(stack)
    handler = fn["reservations"].handler
    for rid in (1, 2, 3):
        assert invoke(handler, event("reserve.json", body=reserve_body(reservationId=rid, portId=PORT_ID)))[0] == 200
    stack.gateway.answer = result("Occupied")
    assert invoke(handler, event("reserve.json", body=reserve_body(reservationId=4, portId=SECOND_PORT_ID)))[0] == 200
    listing = event("list-reservations.json")
    status, page = invoke(handler, listing)
    assert status == 200 and [r["reservationId"] for r in page["data"]] == [1, 2, 3]
    _, first = invoke(handler, with_query(listing, {"limit": "2"}))
    assert [r["reservationId"] for r in first["data"]] == [1, 2] and first["pagination"]["hasNextPage"] is True
    cursor = first["pagination"]["nextPageCursor"]
    _, second = invoke(handler, with_query(listing, {"limit": "2", "nextPageCursor": cursor}))
    assert [r["reservationId"] for r in second["data"]] == [3, 4]
    assert second["pagination"] == {"hasNextPage": False, "nextPageCursor": None}
    occupied = invoke(handler, with_query(listing, {"status": "Occupied"}))[1]["data"]
    assert [r["portId"] for r in occupied] == [SECOND_PORT_ID]
    assert invoke(handler, with_query(listing, {"nextPageCursor": "garbage"}))[0] == 400


def test_expired_reservation_never_shows_active(stack: Stack, fn: dict[str, Any]):
    """An accepted reservation past its expiryDate reads as Expired, inactive."""
    seed(stack)
    assert (
        invoke(fn["reservations"].handler, event("reserve.json", body=reserve_body(expiryDate=future(0.0003))))[0]
        == 200
    )
    time.sleep(1.2)
    _, record = invoke(fn["reservations"].handler, event("get-reservation.json"))
    assert record["data"]["status"] == "Expired" and record["data"]["active"] is False


def test_unknown_reservation_is_404(stack: Stack, fn: dict[str, Any]):
    """GET of a reservation that was never made: 404."""
    seed(stack)
    assert invoke(fn["reservations"].handler, event("get-reservation.json"))[0] == 404


def test_admin_key_cannot_reserve(stack: Stack, fn: dict[str, Any]):
    """The platform admin key owns no chargers: 403 FORBIDDEN on reservations."""
    seed(stack)
    status, body = invoke(fn["reservations"].handler, event("reserve.json", context=principal_context(None)))
    assert (status, body["code"]) == (403, "FORBIDDEN")


def test_missing_authorizer_context_is_401(stack: Stack, fn: dict[str, Any]):
    """Without the authorizer's context (never through API Gateway) the function answers 401."""
    seed(stack)
    assert invoke(fn["reservations"].handler, event("reserve.json", context={}))[0] == 401


# -- chargers -------------------------------------------------------------------------------


def test_register_generates_a_password_once(stack: Stack, fn: dict[str, Any]):
    """POST /api/chargers without password: 201 with a generated one, stored only as a hash."""
    seed(stack)
    status, body = invoke(fn["chargers"].handler, event("register-charger.json"))
    assert status == 201
    data = body["data"]
    assert data["connectionStatus"] is None and data["numberOfPorts"] == 2 and data["ports"][0]["ocppStatus"] is None
    stored = stack.services.registry.get_charger(data["id"])
    assert stored is not None and stored.password_hash is not None
    assert verify_password(data["password"], stored.password_hash) and data["password"] not in stored.password_hash
    read = event("get-charger.json", pathParameters={"chargerId": str(data["id"])}, path=f"/api/chargers/{data['id']}")
    _, again = invoke(fn["chargers"].handler, read)
    assert "password" not in again["data"]


def test_register_with_password_returns_none_and_duplicate_ocpp_id_is_409(stack: Stack, fn: dict[str, Any]):
    """A chosen password is not echoed; an ocppId registered twice is 409 ALREADY_EXISTS."""
    seed(stack)
    body = json.loads(load_event("register-charger.json")["body"]) | {"password": "p" * 16}
    status, created = invoke(fn["chargers"].handler, event("register-charger.json", body=body))
    assert status == 201 and created["data"]["password"] is None
    status, error = invoke(fn["chargers"].handler, event("register-charger.json", body=body))
    assert (status, error["code"]) == (409, "ALREADY_EXISTS")


def test_charger_crud_and_ports(stack: Stack, fn: dict[str, Any]):
    """List, look up, read, update, ports add/update/delete, delete: each as documented."""
    seed(stack)
    h = fn["chargers"].handler
    _, listing = invoke(h, event("list-chargers.json"))
    assert [c["id"] for c in listing["data"]] == [CHARGER_ID]
    assert listing["data"][0]["connectionStatus"]["status"] == "Connected"
    assert [c["ocppId"] for c in invoke(h, event("lookup-charger.json"))[1]["data"]] == [OCPP_ID]
    _, updated = invoke(h, event("update-charger.json"))
    assert updated["data"]["externalId"] == "site-a/cp-12" and updated["data"]["serialNumber"] == "SN-0012"
    by_ext = with_query(event("lookup-charger.json"), {"externalId": "site-a/cp-12"})
    assert [c["id"] for c in invoke(h, by_ext)[1]["data"]] == [CHARGER_ID]
    assert [p["id"] for p in invoke(h, event("list-ports.json"))[1]["data"]] == [PORT_ID, SECOND_PORT_ID]
    status, added = invoke(h, event("add-port.json"))
    assert status == 201 and added["data"]["portNumber"] == 3
    assert invoke(h, event("update-port.json"))[1]["data"]["name"] == "Left bay"
    assert invoke(h, event("delete-port.json")) == (204, None)
    assert stack.services.registry.get_port_ref(SECOND_PORT_ID) is None
    assert invoke(h, event("get-charger.json"))[1]["data"]["numberOfPorts"] == 2
    assert invoke(h, event("delete-charger.json")) == (204, None)
    assert invoke(h, event("get-charger.json"))[0] == 404
    assert stack.services.registry.charger_id_for_ocpp_id(OCPP_ID) is None


# -- security profile 3 ----------------------------------------------------------------------


def register_body(**changes: Any) -> dict[str, Any]:
    return {"ocppId": "CP-TLS-1", "ports": [{"portNumber": 1}], **changes}


def test_a_profile_3_charger_is_registered_with_its_ca_and_no_password(stack: Stack, fn):
    """securityProfile 3 with clientCertificate: stored with the CA (and fingerprint, normalized), shown
    back; no password is generated; moving it to profile 2 needs a password."""
    seed(stack)
    ca = make_ca("Operator CA")
    device = issue(ca, "serial-1")
    colons = ":".join(fingerprint(device.der)[i : i + 2] for i in range(0, 64, 2)).upper()
    body = register_body(
        securityProfile=3, clientCertificate={"caCertificate": ca.pem, "certificateFingerprint": colons}
    )
    status, created = invoke(fn["chargers"].handler, event("register-charger.json", body=body))
    assert status == 201, created
    data = created["data"]
    assert data["securityProfile"] == 3 and data.get("password") is None
    assert data["clientCertificate"] == {"caCertificate": ca.pem, "certificateFingerprint": fingerprint(device.der)}
    stored = stack.services.registry.get_charger(data["id"])
    assert stored.password_hash is None and stored.client_certificate.fingerprint_sha256 == fingerprint(device.der)
    patch = event("update-charger.json", body={"securityProfile": 2})
    patch["pathParameters"], patch["path"] = {"chargerId": str(data["id"])}, f"/api/chargers/{data['id']}"
    status, refused = invoke(fn["chargers"].handler, patch)
    assert (status, refused["code"]) == (400, "INVALID_REQUEST")
    patch["body"] = json.dumps({"securityProfile": 2, "password": "a-new-password-16"})
    status, moved = invoke(fn["chargers"].handler, patch)
    assert status == 200 and (moved["data"]["securityProfile"], moved["data"]["clientCertificate"]) == (2, None)


@pytest.mark.parametrize(
    "changes",
    [
        {"securityProfile": 3},
        {"securityProfile": 2, "clientCertificate": {"caCertificate": "CA"}},
        {"securityProfile": 3, "clientCertificate": {"caCertificate": "not a certificate"}},
        {"securityProfile": 3, "clientCertificate": {"caCertificate": "LEAF"}},
        {"securityProfile": 3, "clientCertificate": {"caCertificate": "CA", "certificateFingerprint": "ab" * 31}},
        {"securityProfile": 3, "clientCertificate": {"caCertificate": "CA"}, "password": "p" * 16},
        {"securityProfile": 4},
        {"securityProfile": "3"},
    ],
)
def test_a_security_profile_that_breaks_the_rules_is_400(stack: Stack, fn, changes: dict[str, Any]):
    seed(stack)
    ca = make_ca("Operator CA")
    pems = {"CA": ca.pem, "LEAF": issue(ca, "x").pem}
    certificate = changes.get("clientCertificate")
    if certificate is not None:
        certificate["caCertificate"] = pems.get(certificate["caCertificate"], certificate["caCertificate"])
    status, body = invoke(fn["chargers"].handler, event("register-charger.json", body=register_body(**changes)))
    assert (status, body["code"]) == (400, "INVALID_REQUEST"), body
    assert stack.services.registry.get_charger_by_ocpp_id("CP-TLS-1") is None


def test_other_accounts_charger_is_404_everywhere(stack: Stack, fn: dict[str, Any]):
    """Another account's key sees nothing of the seeded charger, on every charger route."""
    seed(stack)
    other = principal_context(OTHER_ACCOUNT_ID)
    for name in (
        "get-charger.json",
        "update-charger.json",
        "delete-charger.json",
        "list-ports.json",
        "add-port.json",
        "update-port.json",
        "delete-port.json",
    ):
        assert invoke(fn["chargers"].handler, event(name, context=other))[0] == 404, name
    assert invoke(fn["chargers"].handler, event("list-chargers.json", context=other))[1]["data"] == []
    assert invoke(fn["chargers"].handler, event("lookup-charger.json", context=other))[1]["data"] == []


# -- admin, authorizer, OpenAPI ---------------------------------------------------------------


def test_admin_accounts_and_keys(stack: Stack, fn: dict[str, Any]):
    """The admin creates accounts and keys; the key is shown once and then authenticates."""
    seed(stack)
    h = fn["admin"].handler
    status, account = invoke(h, event("create-account.json"))
    assert status == 201 and account["data"]["name"] == "Acme Charging"
    assert any(a["id"] == account["data"]["id"] for a in invoke(h, event("list-accounts.json"))[1]["data"])
    status, key = invoke(h, event("create-api-key.json"))
    assert status == 201 and key["data"]["chargerIds"] == [CHARGER_ID] and key["data"]["apiKey"].startswith("evr_")
    listed = invoke(h, event("list-api-keys.json"))[1]["data"]
    assert {k["keyId"] for k in listed} == {"acct", key["data"]["keyId"]} and all("apiKey" not in k for k in listed)
    principal = stack.services.accounts.authenticate(f"Bearer {key['data']['apiKey']}")
    assert principal.account_id == ACCOUNT_ID and principal.charger_ids == frozenset({CHARGER_ID})
    assert invoke(h, event("delete-api-key.json")) == (204, None)


def test_account_keys_cannot_administer_other_accounts(stack: Stack, fn: dict[str, Any]):
    """An account key: 403 on accounts and on other accounts' keys; may list its own keys."""
    seed(stack)
    add_other_account(stack)
    acct = principal_context(ACCOUNT_ID)
    assert invoke(fn["admin"].handler, event("create-account.json", context=acct))[0] == 403
    other = event(
        "create-api-key.json",
        context=acct,
        pathParameters={"accountId": str(OTHER_ACCOUNT_ID)},
        path=f"/api/admin/accounts/{OTHER_ACCOUNT_ID}/api-keys",
    )
    assert invoke(fn["admin"].handler, other)[0] == 403
    assert invoke(fn["admin"].handler, event("list-api-keys.json", context=acct))[0] == 200


def test_an_accounts_policy_for_unknown_tokens_is_set_by_its_owner_or_the_admin(stack: Stack, fn: dict[str, Any]):
    """unknownIdTags starts Accepted; the owner sets Invalid (not the name); the admin may rename; a limited
    key, another account and a null get nothing changed."""
    seed(stack)
    add_other_account(stack)
    h = fn["admin"].handler
    owner = principal_context(ACCOUNT_ID)
    status, shown = invoke(h, event("get-account.json", context=owner))
    assert status == 200 and shown["data"]["unknownIdTags"] == "Accepted" and shown["data"]["id"] == ACCOUNT_ID
    for context, body, code in (
        (principal_context(charger_ids=[CHARGER_ID]), None, 403),
        (principal_context(OTHER_ACCOUNT_ID), None, 403),
        (owner, {"name": "Renamed"}, 403),
        (owner, {"unknownIdTags": None}, 400),
        (owner, {"unknownIdTags": "Blocked"}, 400),
        (owner, {"id": 9}, 400),
    ):
        status, body_ = invoke(h, event("update-account.json", context=context, body=body))
        assert status == code, (context, body, body_)
    assert invoke(h, event("get-account.json"))[1]["data"]["unknownIdTags"] == "Accepted"
    status, changed = invoke(h, event("update-account.json", context=owner))
    assert status == 200 and changed["data"]["unknownIdTags"] == "Invalid"
    assert stack.services.account_store.get_account(ACCOUNT_ID).unknown_id_tags.value == "Invalid"
    status, renamed = invoke(h, event("update-account.json", body={"name": "Renamed"}))
    assert status == 200 and renamed["data"] == {**changed["data"], "name": "Renamed"}
    missing = event("get-account.json", pathParameters={"accountId": "999"}, path="/api/admin/accounts/999")
    assert invoke(h, missing)[0] == 404


def test_authorizer_allows_the_whole_stage_with_context(stack: Stack, fn: dict[str, Any]):
    """A known key: Allow on {apiId}/{stage}/*/* and the principal's context."""
    seed(stack)
    answer = fn["authorizer"].handler(event("authorizer.json"), LambdaContext())
    statement = answer["policyDocument"]["Statement"][0]
    assert statement["Effect"] == "Allow"
    assert statement["Resource"] == "arn:aws:execute-api:us-east-1:123456789012:abc123def4/dev/*/*"
    assert answer["context"] == {
        "keyId": "acct",
        "accountId": str(ACCOUNT_ID),
        "isAdmin": "false",
        "chargerIds": "null",
    }


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic " + ACCOUNT_KEY, "Bearer "])
def test_authorizer_rejects_unknown_keys_with_unauthorized(stack: Stack, fn: dict[str, Any], header: str | None):
    """Missing, unknown or non-Bearer: raise Exception("Unauthorized") (API Gateway's 401)."""
    seed(stack)
    request = event("authorizer.json")
    request["headers"] = {"Authorization": header} if header is not None else {}
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        fn["authorizer"].handler(request, LambdaContext())


def test_message_log_lists_the_asked_for_actions_newest_first(stack: Stack, fn: dict[str, Any]):
    """GET /api/ocpp-messages with messageType[] repeated: those actions of the charger, newest first."""
    charger = seed(stack)
    now = int(time.time() * 1000)
    records = [
        (now - 3000, 1, "ReserveNow", '[2,"a","ReserveNow",{"reservationId":1001}]', '[3,"a",{"status":"Accepted"}]'),
        (now - 2000, 0, "Heartbeat", '[2,"b","Heartbeat",{}]', '[3,"b",{"currentTime":"x"}]'),
        (now - 1000, 1, "CancelReservation", '[2,"c","CancelReservation",{"reservationId":1001}]', None),
    ]
    store = MessageLogStore(stack.dynamodb, os.environ["OCPP_MESSAGES_TABLE"])
    assert store.put([Batch("b1", charger.id, charger.account_id, charger.ocpp_id, "ocpp1.6", records)]) == []
    status, body = invoke(fn["messages"].handler, event("list-ocpp-messages.json"))
    assert status == 200, body
    assert [(m["messageType"], m["direction"], m["messageResponse"]) for m in body["data"]] == [
        ("CancelReservation", "toCharger", None),
        ("ReserveNow", "toCharger", {"status": "Accepted"}),
    ]
    assert body["data"][1]["messagePayload"] == {"reservationId": 1001}
    assert {m["ocppChargerIdentity"] for m in body["data"]} == {charger.ocpp_id}
    assert body["pagination"] == {"hasNextPage": False, "nextPageCursor": None}


def test_openapi_document_is_served(stack: Stack, fn: dict[str, Any]):
    """GET /api/openapi.json answers the bundled, generated document."""
    seed(stack)
    status, document = invoke(fn["admin"].handler, event("get-openapi.json"))
    assert status == 200 and "/api/ocpp/reservations" in document["paths"]


def test_unknown_route_is_404_envelope(stack: Stack, fn: dict[str, Any]):
    """A path no route matches: 404 in the error envelope."""
    seed(stack)
    request = load_event("get-charger.json", path="/api/nothing", resource="/api/nothing")
    assert invoke(fn["chargers"].handler, request) == (404, {"error": "Not found", "code": "NOT_FOUND"})


# -- webhooks ------------------------------------------------------------------------------


def webhook_event(name: str, webhook_id: str, **kwargs: Any) -> dict[str, Any]:
    """A webhook sample aimed at ``webhook_id``."""
    request = event(name, **kwargs)
    sample_id = request["pathParameters"]["webhookId"]
    request["pathParameters"] = {"webhookId": webhook_id}
    request["path"] = request["path"].replace(sample_id, webhook_id)
    return request


def test_a_webhook_is_created_listed_read_and_deleted_and_only_creation_shows_its_secret(stack: Stack, fn):
    seed(stack)
    status, created = invoke(fn["webhooks"].handler, event("create-webhook.json"))
    assert status == 201
    data = created["data"]
    assert data["url"] == "https://partner.example.com/evreserve/events"
    assert data["events"] == ["reservation.accepted", "reservation.cancelled", "reservation.used"]
    assert data["description"] == "Partner booking system"
    assert data["secret"].startswith("whsec_") and len(data["secret"]) > 40
    assert data["id"].startswith("wh_") and data["createdAt"].endswith("Z")
    shown = {k: v for k, v in data.items() if k != "secret"}
    assert invoke(fn["webhooks"].handler, event("list-webhooks.json")) == (
        200,
        {"data": [shown], "pagination": {"hasNextPage": False, "nextPageCursor": None}},
    )
    assert invoke(fn["webhooks"].handler, webhook_event("get-webhook.json", data["id"])) == (200, {"data": shown})
    assert invoke(fn["webhooks"].handler, webhook_event("list-webhook-deliveries.json", data["id"])) == (
        200,
        {"data": [], "pagination": {"hasNextPage": False, "nextPageCursor": None}},
    )
    assert invoke(fn["webhooks"].handler, webhook_event("delete-webhook.json", data["id"])) == (204, None)
    for name in ("get-webhook.json", "delete-webhook.json", "list-webhook-deliveries.json"):
        status, body = invoke(fn["webhooks"].handler, webhook_event(name, data["id"]))
        assert (status, body["code"]) == (404, "NOT_FOUND"), name


def test_a_webhook_without_events_gets_every_type(stack: Stack, fn):
    seed(stack)
    body = {"url": "https://partner.example.com/all"}
    status, created = invoke(fn["webhooks"].handler, event("create-webhook.json", body=body))
    assert status == 201
    assert created["data"]["events"] == [
        "reservation.accepted",
        "reservation.refused",
        "reservation.failed",
        "reservation.cancelled",
        "reservation.used",
        "reservation.expired",
        "reservation.removed",
    ]
    assert created["data"]["description"] is None


@pytest.mark.parametrize(
    "url",
    [
        "http://partner.example.com/hooks",
        "ftp://partner.example.com/hooks",
        "https://127.0.0.1/hooks",
        "https://localhost/hooks",
        "https://10.1.2.3/hooks",
        "https://192.168.0.10/hooks",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hooks",
        "https://[fd00::1]/hooks",
        "https://[::ffff:10.0.0.1]/hooks",
        "https://100.64.0.1/hooks",
        "https://0.0.0.0/hooks",
        "https://user:pass@partner.example.com/hooks",
        "https:///hooks",
        "https://partner.example.com:99999/hooks",
        "not a url",
        "https://partner.example.com/" + "a" * 2100,
    ],
)
def test_a_webhook_url_that_is_not_public_https_is_400(stack: Stack, fn, url: str):
    seed(stack)
    status, body = invoke(fn["webhooks"].handler, event("create-webhook.json", body={"url": url}))
    assert status == 400 and body["code"] == "INVALID_REQUEST", body
    assert invoke(fn["webhooks"].handler, event("list-webhooks.json"))[1]["data"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"url": "https://partner.example.com/h", "events": ["reservation.started"]},
        {"url": "https://partner.example.com/h", "events": []},
        {"url": "https://partner.example.com/h", "description": "d" * 201},
        {"url": "https://partner.example.com/h", "secret": "mine"},
        {"events": ["reservation.accepted"]},
    ],
)
def test_a_webhook_body_that_breaks_the_rules_is_400(stack: Stack, fn, body: dict[str, Any]):
    seed(stack)
    status, answer = invoke(fn["webhooks"].handler, event("create-webhook.json", body=body))
    assert status == 400 and answer["code"] == "INVALID_REQUEST", answer


def test_only_a_key_of_the_whole_account_manages_webhooks(stack: Stack, fn):
    seed(stack)
    _, created = invoke(fn["webhooks"].handler, event("create-webhook.json"))
    webhook_id = created["data"]["id"]
    for context in (principal_context(charger_ids=[CHARGER_ID]), principal_context(None)):
        for request in (
            event("create-webhook.json", context=context),
            event("list-webhooks.json", context=context),
            webhook_event("get-webhook.json", webhook_id, context=context),
            webhook_event("delete-webhook.json", webhook_id, context=context),
            webhook_event("list-webhook-deliveries.json", webhook_id, context=context),
        ):
            status, body = invoke(fn["webhooks"].handler, request)
            assert (status, body["code"]) == (403, "FORBIDDEN"), request["httpMethod"] + " " + request["path"]
    # Another account sees nothing of it and cannot delete it.
    other = principal_context(OTHER_ACCOUNT_ID)
    assert invoke(fn["webhooks"].handler, event("list-webhooks.json", context=other))[1]["data"] == []
    for name in ("get-webhook.json", "delete-webhook.json", "list-webhook-deliveries.json"):
        status, body = invoke(fn["webhooks"].handler, webhook_event(name, webhook_id, context=other))
        assert (status, body["code"]) == (404, "NOT_FOUND")
    assert invoke(fn["webhooks"].handler, webhook_event("get-webhook.json", webhook_id))[0] == 200


# -- access IDs ----------------------------------------------------------------------------


def access_id_event(name: str, access_id: int, **kwargs: Any) -> dict[str, Any]:
    """An access ID sample aimed at ``access_id``."""
    request = event(name, **kwargs)
    request["pathParameters"] = {"id": str(access_id)}
    request["path"] = request["path"].rsplit("/", 1)[0] + f"/{access_id}"
    return request


def test_an_access_id_is_created_found_changed_and_deleted(stack: Stack, fn):
    seed(stack)
    handler = fn["access_ids"].handler
    status, created = invoke(handler, event("create-access-id.json"))
    assert status == 201, created
    data = created["data"]
    assert {k: v for k, v in data.items() if k not in ("id", "createdAt", "updatedAt")} == {
        "ocppIdTag": "RFID002",
        "type": "RFID",
        "authorizationStatus": "Authorized",
        "parentIdTag": "FLEET-A",
        "name": "Driver 2 of fleet A",
    }
    assert isinstance(data["id"], int) and data["createdAt"] == data["updatedAt"]
    page = {"hasNextPage": False, "nextPageCursor": None}
    assert invoke(handler, event("list-access-ids.json")) == (200, {"data": [data], "pagination": page})
    assert invoke(handler, access_id_event("get-access-id.json", data["id"])) == (200, {"data": data})
    # idTags compare case-insensitively, as OCPP does: found in any case, unique in any case.
    found = invoke(handler, with_query(event("list-access-ids.json"), {"ocppIdTag": "rfid002"}))
    assert found == (200, {"data": [data], "pagination": page})
    group = invoke(handler, with_query(event("list-access-ids.json"), {"parentIdTag": "fleet-a"}))[1]["data"]
    assert group == [data]
    assert invoke(handler, with_query(event("list-access-ids.json"), {"parentIdTag": "FLEET-B"}))[1]["data"] == []
    status, body = invoke(handler, event("create-access-id.json", body={"ocppIdTag": "rfid002", "type": "Local"}))
    assert (status, body["code"]) == (409, "ACCESS_ID_EXISTS")

    status, changed = invoke(
        handler,
        access_id_event(
            "update-access-id.json", data["id"], body={"authorizationStatus": "Revoked", "parentIdTag": None}
        ),
    )
    assert status == 200, changed
    after = changed["data"]
    assert (after["authorizationStatus"], after["parentIdTag"], after["name"]) == ("Revoked", None, data["name"])
    assert after["updatedAt"] > data["updatedAt"] and after["createdAt"] == data["createdAt"]
    assert invoke(handler, access_id_event("get-access-id.json", data["id"]))[1] == {"data": after}
    assert stack.services.access_ids._store.by_tag(ACCOUNT_ID, "Rfid002") is not None

    assert invoke(handler, access_id_event("delete-access-id.json", data["id"])) == (204, None)
    for name in ("get-access-id.json", "delete-access-id.json", "update-access-id.json"):
        status, body = invoke(handler, access_id_event(name, data["id"]))
        assert (status, body["code"]) == (404, "NOT_FOUND"), name
    # The idTag is free again.
    assert invoke(handler, event("create-access-id.json"))[0] == 201


@pytest.mark.parametrize(
    "body",
    [
        {"type": "RFID"},
        {"ocppIdTag": "RFID002"},
        {"ocppIdTag": "RFID002", "type": "Card"},
        {"ocppIdTag": "", "type": "RFID"},
        {"ocppIdTag": "R" * 21, "type": "RFID"},
        {"ocppIdTag": "RFID\u00e9", "type": "RFID"},
        {"ocppIdTag": "RFID002", "type": "RFID", "parentIdTag": "P" * 21},
        {"ocppIdTag": "RFID002", "type": "RFID", "authorizationStatus": "Blocked"},
        {"ocppIdTag": "RFID002", "type": "RFID", "name": "n" * 101},
        {"ocppIdTag": "RFID002", "type": "RFID", "id": 5},
        {"ocppIdTag": 12345, "type": "RFID"},
    ],
)
def test_an_access_id_body_that_breaks_the_rules_is_400(stack: Stack, fn, body: dict[str, Any]):
    seed(stack)
    status, answer = invoke(fn["access_ids"].handler, event("create-access-id.json", body=body))
    assert status == 400 and answer["code"] == "INVALID_REQUEST", answer
    assert invoke(fn["access_ids"].handler, event("list-access-ids.json"))[1]["data"] == []


@pytest.mark.parametrize(
    "body", [{"ocppIdTag": "OTHER"}, {"type": None}, {"authorizationStatus": None}, {"parentIdTag": ""}]
)
def test_an_access_id_change_that_breaks_the_rules_is_400_and_changes_nothing(stack: Stack, fn, body):
    seed(stack)
    handler = fn["access_ids"].handler
    created = invoke(handler, event("create-access-id.json"))[1]["data"]
    status, answer = invoke(handler, access_id_event("update-access-id.json", created["id"], body=body))
    assert status == 400 and answer["code"] == "INVALID_REQUEST", answer
    assert invoke(handler, access_id_event("get-access-id.json", created["id"]))[1] == {"data": created}


def test_only_a_key_of_the_whole_account_manages_access_ids(stack: Stack, fn):
    seed(stack)
    handler = fn["access_ids"].handler
    access_id = invoke(handler, event("create-access-id.json"))[1]["data"]["id"]
    for context in (principal_context(charger_ids=[CHARGER_ID]), principal_context(None)):
        for request in (
            event("create-access-id.json", context=context),
            event("list-access-ids.json", context=context),
            access_id_event("get-access-id.json", access_id, context=context),
            access_id_event("update-access-id.json", access_id, context=context),
            access_id_event("delete-access-id.json", access_id, context=context),
        ):
            status, body = invoke(handler, request)
            assert (status, body["code"]) == (403, "FORBIDDEN"), request["httpMethod"] + " " + request["path"]
    # Another account sees nothing of it, cannot change or delete it, and may use the same idTag.
    other = principal_context(OTHER_ACCOUNT_ID)
    assert invoke(handler, event("list-access-ids.json", context=other))[1]["data"] == []
    for name in ("get-access-id.json", "update-access-id.json", "delete-access-id.json"):
        status, body = invoke(handler, access_id_event(name, access_id, context=other))
        assert (status, body["code"]) == (404, "NOT_FOUND")
    assert invoke(handler, event("create-access-id.json", context=other))[0] == 201
    mine = invoke(handler, access_id_event("get-access-id.json", access_id))[1]["data"]
    assert mine["authorizationStatus"] == "Authorized"


def test_access_ids_page_in_id_tag_order(stack: Stack, fn):
    seed(stack)
    handler = fn["access_ids"].handler
    tags = [f"TAG{n:02d}" for n in range(23)]
    for n, tag in enumerate(reversed(tags)):
        body = {"ocppIdTag": tag, "type": "RFID", **({"parentIdTag": "EVEN"} if n % 2 == 0 else {})}
        assert invoke(handler, event("create-access-id.json", body=body))[0] == 201
    for query, expected in (({}, tags), ({"parentIdTag": "even"}, [t for t in tags if int(t[3:]) % 2 == 0])):
        listed = invoke(handler, with_query(event("list-access-ids.json"), {"limit": "5", **query}))[1]
        seen = [a["ocppIdTag"] for a in listed["data"]]
        while listed["pagination"]["hasNextPage"]:
            cursor = listed["pagination"]["nextPageCursor"]
            listed = invoke(
                handler, with_query(event("list-access-ids.json"), {"limit": "5", "nextPageCursor": cursor, **query})
            )[1]
            seen += [a["ocppIdTag"] for a in listed["data"]]
        assert seen == expected, query


def test_an_account_has_at_most_max_webhooks(stack: Stack, fn):
    seed(stack)
    limit = stack.services.webhooks._max
    for _ in range(limit):
        assert invoke(fn["webhooks"].handler, event("create-webhook.json"))[0] == 201
    status, body = invoke(fn["webhooks"].handler, event("create-webhook.json"))
    assert (status, body["code"]) == (409, "QUOTA_EXCEEDED")
    listed = invoke(fn["webhooks"].handler, with_query(event("list-webhooks.json"), {"limit": "7"}))[1]
    seen = list(listed["data"])
    while listed["pagination"]["hasNextPage"]:
        query = {"limit": "7", "nextPageCursor": listed["pagination"]["nextPageCursor"]}
        listed = invoke(fn["webhooks"].handler, with_query(event("list-webhooks.json"), query))[1]
        seen += listed["data"]
    assert len({w["id"] for w in seen}) == limit


def test_a_webhooks_delivery_log_lists_attempts_newest_first(stack: Stack, fn):
    seed(stack)
    _, created = invoke(fn["webhooks"].handler, event("create-webhook.json"))
    webhook_id = created["data"]["id"]
    store = stack.services.webhooks._store
    t0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    attempts = [
        (1, DeliveryStatus.RETRYING, 500, "HTTP 500"),
        (2, DeliveryStatus.RETRYING, None, "connection failed"),
        (3, DeliveryStatus.DELIVERED, 204, None),
    ]
    for attempt, status, code, error in attempts:
        at = t0 + timedelta(seconds=30 * attempt)
        store.record(
            webhook_id,
            DeliveryRecord(
                event_id="evt_1",
                event_type="reservation.accepted",
                attempt=attempt,
                status=status,
                response_status=code,
                error=error,
                at=at,
            ),
        )
    request = with_query(webhook_event("list-webhook-deliveries.json", webhook_id), {"limit": "2"})
    status, page = invoke(fn["webhooks"].handler, request)
    assert status == 200
    assert page["data"] == [
        {
            "eventId": "evt_1",
            "type": "reservation.accepted",
            "attempt": 3,
            "status": "delivered",
            "responseStatus": 204,
            "error": None,
            "at": "2026-12-06T12:01:30Z",
        },
        {
            "eventId": "evt_1",
            "type": "reservation.accepted",
            "attempt": 2,
            "status": "retrying",
            "responseStatus": None,
            "error": "connection failed",
            "at": "2026-12-06T12:01:00Z",
        },
    ]
    assert page["pagination"]["hasNextPage"] is True
    query = {"limit": "2", "nextPageCursor": page["pagination"]["nextPageCursor"]}
    _, rest = invoke(
        fn["webhooks"].handler, with_query(webhook_event("list-webhook-deliveries.json", webhook_id), query)
    )
    assert [d["attempt"] for d in rest["data"]] == [1] and rest["pagination"]["hasNextPage"] is False
    # A cursor of this log does not open another webhook's.
    _, other = invoke(fn["webhooks"].handler, event("create-webhook.json"))
    request = with_query(webhook_event("list-webhook-deliveries.json", other["data"]["id"]), query)
    status, body = invoke(fn["webhooks"].handler, request)
    assert (status, body["code"]) == (400, "INVALID_REQUEST")


def test_the_docs_sample_reads_swagger_ui_without_a_key(fn: dict[str, Any]):
    """events/get-docs.json carries no Authorization and no authorizer context: the page is open."""
    request = event("get-docs.json")
    assert "Authorization" not in request["headers"] and "authorizer" not in request["requestContext"]
    answer = fn["docs"].handler(request, LambdaContext())
    assert answer["statusCode"] == 200 and "SwaggerUIBundle" in answer["body"]


def test_every_sample_event_is_exercised():
    """Every events/*.json is loaded by a test of this module (by name, through event())."""
    source = Path(__file__).read_text(encoding="utf-8")
    unused = [p.name for p in EVENTS.glob("*.json") if f'event("{p.name}"' not in source]
    assert unused == []
