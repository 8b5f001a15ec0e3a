"""``evreserve-admin`` against the local API: what an operator does, table and JSON alike."""

from __future__ import annotations

import io
import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from admin.cli import main
from devstack.local_api import LocalApi

pytestmark = pytest.mark.integration


class Cli:
    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key

    def __call__(self, *argv: str, key: str | None = None) -> tuple[int, str]:
        buffer = io.StringIO()
        console = Console(file=buffer, width=250, force_terminal=False, color_system=None)
        code = main(["--url", self.url, "--key", key or self.key, *argv], console=console)
        return code, buffer.getvalue()

    def json(self, *argv: str, key: str | None = None) -> Any:
        code, text = self("--json", *argv, key=key)
        assert code == 0, text
        return json.loads(text)


@pytest.fixture(scope="module")
def cli(local_api: LocalApi, admin_api_key: str) -> Cli:
    return Cli(local_api.url, admin_api_key)


@pytest.fixture(scope="module")
def owner(cli: Cli) -> str:
    account = cli.json("accounts", "create", f"cli-{secrets.token_hex(3)}")
    key = cli.json("keys", "create", str(account["id"]), "operator")
    return str(key["apiKey"])


def test_accounts_and_keys_as_the_admin(cli: Cli):
    name = f"cli-acct-{secrets.token_hex(3)}"
    account = cli.json("accounts", "create", name)
    code, table = cli("accounts", "list")
    assert code == 0 and name in table
    key = cli.json("keys", "create", str(account["id"]), "reader")
    assert key["apiKey"].startswith("evr_")
    listed = cli.json("keys", "list", str(account["id"]))
    assert [k["keyId"] for k in listed] == [key["keyId"]] and "apiKey" not in listed[0]
    code, text = cli("keys", "revoke", str(account["id"]), key["keyId"])
    assert code == 0 and "revoked" in text
    assert cli.json("keys", "list", str(account["id"])) == []
    changed = cli.json("accounts", "unknown-id-tags", str(account["id"]), "Invalid")
    assert changed["unknownIdTags"] == "Invalid"


def test_chargers_one_by_one_and_from_a_csv(cli: Cli, owner: str, tmp_path: Path):
    mark = secrets.token_hex(3)
    created = cli.json("chargers", "create", f"CLI-{mark}", "--ports", "3", "--version", "2.0.1", key=owner)
    assert created["password"] and len(created["ports"]) == 3
    csv_file = tmp_path / "fleet.csv"
    csv_file.write_text(
        "ocppId,ports,ocppVersion,externalId\n"
        f"CSV-{mark}-1,2,1.6,site-a/1\n"
        f"CSV-{mark}-2,1,,\n"
        f"CLI-{mark},2,,\n"  # taken: reported, the others still registered
        f"CSV-{mark}-3,x,,\n"
    )
    code, text = cli("chargers", "import", str(csv_file), key=owner)
    assert code == 1, text
    assert f"CSV-{mark}-1" in text and f"CSV-{mark}-2" in text and "ALREADY_EXISTS" in text
    result = cli.json("chargers", "list", key=owner)
    ocpp_ids = {c["ocppId"] for c in result}
    assert {f"CLI-{mark}", f"CSV-{mark}-1", f"CSV-{mark}-2"} <= ocpp_ids and f"CSV-{mark}-3" not in ocpp_ids
    code, table = cli("chargers", "list", "--ocpp-id", f"CSV-{mark}-1", key=owner)
    assert code == 0 and "vendor" in table and "firmware" in table and f"CSV-{mark}-1" in table
    ports = cli.json("ports", "list", str(created["id"]), key=owner)
    assert [p["portNumber"] for p in ports] == [1, 2, 3]
    code, text = cli("chargers", "delete", str(created["id"]), key=owner)
    assert code == 0
    code, text = cli("chargers", "get", str(created["id"]), key=owner)
    assert code == 1 and "NOT_FOUND" in text


def test_access_ids_and_webhooks(cli: Cli, owner: str):
    tag = f"T{secrets.token_hex(4)}"
    token = cli.json("access-ids", "create", tag, "--group", "FLEET-CLI", "--name", "driver", key=owner)
    assert (token["ocppIdTag"], token["parentIdTag"]) == (tag, "FLEET-CLI")
    assert cli.json("access-ids", "revoke", str(token["id"]), key=owner)["authorizationStatus"] == "Revoked"
    group = cli.json("access-ids", "list", "--group", "FLEET-CLI", key=owner)
    assert [t["ocppIdTag"] for t in group] == [tag]
    code, _ = cli("access-ids", "delete", str(token["id"]), key=owner)
    assert code == 0 and cli.json("access-ids", "list", key=owner) == []
    webhook = cli.json("webhooks", "create", "https://hooks.example.com/cli", "--events", "reservation.used", key=owner)
    assert webhook["secret"].startswith("whsec_")
    code, table = cli("webhooks", "list", key=owner)
    assert code == 0 and "hooks.example.com/cli" in table and "used" in table
    assert cli.json("webhooks", "deliveries", webhook["id"], key=owner) == []
    assert cli("webhooks", "delete", webhook["id"], key=owner)[0] == 0


def test_refusals_and_a_missing_key_are_clear(cli: Cli, owner: str, monkeypatch: pytest.MonkeyPatch):
    code, text = cli("accounts", "list", key=owner)
    assert code == 1 and "403" in text and "FORBIDDEN" in text
    monkeypatch.delenv("EVRESERVE_API_KEY", raising=False)
    buffer = io.StringIO()
    assert main(["--url", cli.url, "accounts", "list"], console=Console(file=buffer)) == 2
    assert "no API key" in buffer.getvalue()
    code, text = Cli("http://127.0.0.1:9", owner)("chargers", "list")
    assert code == 1 and "cannot reach" in text
