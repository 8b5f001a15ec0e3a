"""No API key and no charger password ever reaches a log line.

One run through the local API and a real gateway: an admin creates an account and its
keys, the account registers chargers with a chosen and with a generated password,
changes a password, sends invalid requests carrying one and a request with an unknown
key; a charger connects with Basic auth, another with a wrong password. Everything the
process logs meanwhile (the functions' Powertools JSON lines, the authorizer, the local
API, the gateway, any library) is captured as formatted and searched for each secret,
also base64-encoded as in a Basic-auth header.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fixtures.gateway_fixtures import charger_session, wait_held
from websockets.exceptions import InvalidStatus

from evreserve.models import OcppVersion

pytestmark = pytest.mark.integration


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # The record itself (message, arguments, extra fields, traceback), not a format of it.
        self.lines.append(repr(record.__dict__) + record.getMessage())


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every log line of the process while the test runs, as records and as their handlers wrote them."""
    written: list[str] = []
    emit = logging.StreamHandler.emit

    def tee(handler: logging.StreamHandler[Any], record: logging.LogRecord) -> None:
        written.append(handler.format(record))  # Powertools' JSON with its appended keys
        emit(handler, record)

    monkeypatch.setattr(logging.StreamHandler, "emit", tee)
    capture = _Capture()
    capture.lines = written
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)  # what a deployment logs; the functions' own loggers keep theirs
    root.addHandler(capture)
    quiet = [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger) and not lg.propagate
    ]
    for lg in quiet:
        lg.addHandler(capture)
    try:
        yield written
    finally:
        for lg in quiet:
            lg.removeHandler(capture)
        root.removeHandler(capture)
        root.setLevel(level)


def _forms(secret: str, ocpp_id: str | None = None) -> list[str]:
    forms = [secret]
    if ocpp_id is not None:
        forms.append(base64.b64encode(f"{ocpp_id}:{secret}".encode()).decode())
    return forms


async def test_keys_and_passwords_never_reach_the_logs(local_api, admin_api_key, gateway, registry, logs):
    """GIVEN a full run of keys, registrations and charger logins WHEN its logs are searched THEN no secret is found."""
    chosen, changed, wrong = "chosen-password-0001", "changed-password-0002", "wrong-password-00003"
    invalid = "invalid-password-0004"
    secrets: list[str] = [admin_api_key, chosen, changed, wrong, invalid]
    admin = {"Authorization": f"Bearer {admin_api_key}"}
    async with httpx.AsyncClient(base_url=local_api.url, timeout=30) as http:
        account = (await http.post("/api/admin/accounts", json={"name": "logs"}, headers=admin)).json()["data"]
        issued = await http.post(f"/api/admin/accounts/{account['id']}/api-keys", json={"name": "k"}, headers=admin)
        key = issued.json()["data"]["apiKey"]
        secrets.append(key)
        owner = {"Authorization": f"Bearer {key}"}
        ocpp_id = f"LOGS-{account['id']}"
        body = {"ocppId": ocpp_id, "password": chosen, "ports": [{"portNumber": 1}]}
        charger = (await http.post("/api/chargers", json=body, headers=owner)).json()["data"]
        generated = await http.post(
            "/api/chargers", json={"ocppId": f"{ocpp_id}-G", "ports": [{"portNumber": 1}]}, headers=owner
        )
        secrets.append(generated.json()["data"]["password"])
        limited = await http.post(
            f"/api/admin/accounts/{account['id']}/api-keys",
            json={"name": "one", "chargerIds": [charger["id"]]},
            headers=owner,
        )
        secrets.append(limited.json()["data"]["apiKey"])
        for bad in ({"ocppId": "has:colon", "password": invalid, "ports": []}, {"password": invalid, "x": 1}):
            assert (await http.post("/api/chargers", json=bad, headers=owner)).status_code == 400
        assert (await http.post("/api/chargers", content=f"password={invalid}", headers=owner)).status_code == 400
        unknown = "evr_000000000000_notakeynotakeynotakeynotakeynotakey00000"
        secrets.append(unknown)
        assert (await http.get("/api/chargers", headers={"Authorization": f"Bearer {unknown}"})).status_code == 401
        stored = registry.get_charger(charger["id"])
        async with charger_session(gateway, stored, OcppVersion.V16, password=chosen):
            await wait_held(gateway, stored, registry)
        with pytest.raises(InvalidStatus):
            async with charger_session(gateway, stored, OcppVersion.V16, password=wrong):
                pass
        patched = await http.patch(f"/api/chargers/{charger['id']}", json={"password": changed}, headers=owner)
        assert patched.status_code == 200
        async with charger_session(gateway, stored, OcppVersion.V16, password=changed):
            await wait_held(gateway, stored, registry)
    text = "\n".join(logs)
    # The capture did see the functions, the authorizer, the local API and the gateway.
    for seen in ("accepted API key", "rejected API key", "POST /api/chargers", "charger connected"):
        assert seen in text, seen
    for secret in secrets:
        for form in _forms(secret, ocpp_id):
            assert form not in text, f"a secret ({secret[:6]}...) is in the logs"
