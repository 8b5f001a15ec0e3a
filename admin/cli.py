"""``evreserve-admin``: the API's accounts, keys, chargers, access IDs and webhooks from a terminal.

    export EVRESERVE_URL=http://127.0.0.1:3000 EVRESERVE_API_KEY=evr_...
    evreserve-admin chargers list
    evreserve-admin chargers import fleet.csv
    evreserve-admin --json access-ids list --group FLEET-A

Every command is one or a few API calls with the key from ``--key`` / ``EVRESERVE_API_KEY``
(an account key, or the admin key for accounts): what the key may not do, the API refuses,
and the CLI prints its ``error`` and ``code`` and exits 1. Lists follow every page. Tables
by default; ``--json`` prints the API's ``data`` as JSON instead, for scripts.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

DEFAULT_URL = "http://127.0.0.1:3000"
#: The columns of a charger CSV; ``ocppId`` and ``ports`` (a count) are required.
CSV_COLUMNS = ("ocppId", "ports", "ocppVersion", "externalId", "serialNumber", "password")


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        error = body.get("error") if isinstance(body, dict) else None
        code = body.get("code") if isinstance(body, dict) else None
        super().__init__(f"{status} {code or ''}: {error or body}".replace(" :", ":"))
        self.status, self.code = status, code


class Api:
    def __init__(self, url: str, key: str, transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(
            base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {key}"}, timeout=30, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        answer = self._http.request(method, path, json=body, params=params)
        if answer.status_code == 204:
            return None
        try:
            payload = answer.json()
        except ValueError:
            payload = answer.text
        if answer.status_code >= 400:
            raise ApiError(answer.status_code, payload)
        return payload.get("data") if isinstance(payload, dict) else payload

    def every(self, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """All pages of a list."""
        found: list[dict[str, Any]] = []
        query = {**(params or {}), "limit": 500}
        while True:
            answer = self._http.get(path, params=query)
            if answer.status_code >= 400:
                raise ApiError(answer.status_code, answer.json())
            payload = answer.json()
            found.extend(payload["data"])
            pagination = payload.get("pagination") or {}
            if not pagination.get("hasNextPage"):
                return found
            query["nextPageCursor"] = pagination["nextPageCursor"]


# -- output -------------------------------------------------------------------------------------


class Out:
    def __init__(self, as_json: bool, console: Console) -> None:
        self.as_json = as_json
        self.console = console

    def show(self, data: Any, columns: Sequence[tuple[str, Callable[[dict[str, Any]], Any]]], title: str) -> None:
        if self.as_json:
            self.console.print_json(json.dumps(data))
            return
        rows = data if isinstance(data, list) else [data]
        table = Table(title=title)
        for name, _ in columns:
            table.add_column(name)
        for row in rows:
            table.add_row(*("" if (v := get(row)) is None else str(v) for _, get in columns))
        self.console.print(table)

    def done(self, message: str, data: Any = None) -> None:
        if self.as_json:
            self.console.print_json(json.dumps(data))
        else:
            self.console.print(message)


def _field(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: row.get(name)


ACCOUNT_COLUMNS = [("id", _field("id")), ("name", _field("name")), ("unknownIdTags", _field("unknownIdTags"))]
KEY_COLUMNS = [
    ("keyId", _field("keyId")),
    ("name", _field("name")),
    ("chargerIds", lambda r: ",".join(map(str, r["chargerIds"])) if r.get("chargerIds") else "all"),
    ("createdAt", _field("createdAt")),
]
CHARGER_COLUMNS = [
    ("id", _field("id")),
    ("ocppId", _field("ocppId")),
    ("version", lambda r: r.get("protocol") or r.get("ocppVersion")),
    ("connection", lambda r: (r.get("connectionStatus") or {}).get("status")),
    (
        "ports",
        lambda r: " ".join(f"{p['portNumber']}:{(p.get('ocppStatus') or {}).get('status', '-')}" for p in r["ports"]),
    ),
    ("vendor", lambda r: (r.get("boot") or {}).get("vendor")),
    ("model", lambda r: (r.get("boot") or {}).get("model")),
    ("firmware", lambda r: (r.get("boot") or {}).get("firmwareVersion")),
    ("profile", _field("securityProfile")),
]
PORT_COLUMNS = [
    ("id", _field("id")),
    ("portNumber", _field("portNumber")),
    ("name", _field("name")),
    ("status", lambda r: (r.get("ocppStatus") or {}).get("status")),
    ("connectors", lambda r: " ".join(f"{c['connectorId']}:{c['status']}" for c in r.get("connectors") or [])),
]
ACCESS_ID_COLUMNS = [
    ("id", _field("id")),
    ("ocppIdTag", _field("ocppIdTag")),
    ("type", _field("type")),
    ("status", _field("authorizationStatus")),
    ("group", _field("parentIdTag")),
    ("name", _field("name")),
]
WEBHOOK_COLUMNS = [
    ("id", _field("id")),
    ("url", _field("url")),
    ("events", lambda r: ", ".join(e.removeprefix("reservation.") for e in r["events"])),
    ("description", _field("description")),
]
DELIVERY_COLUMNS = [
    ("at", _field("at")),
    ("eventId", _field("eventId")),
    ("type", _field("type")),
    ("attempt", _field("attempt")),
    ("status", _field("status")),
    ("http", _field("responseStatus")),
    ("error", _field("error")),
]


# -- commands -----------------------------------------------------------------------------------


def import_chargers(api: Api, path: Path, console: Console) -> dict[str, Any]:
    """Register every row of a CSV; a failed row is reported and the rest go on."""
    with path.open(newline="", encoding="utf-8") as source:
        rows = list(csv.DictReader(source))
    unknown = set(rows[0]) - set(CSV_COLUMNS) if rows else set()
    if unknown:
        raise ValueError(f"unknown CSV columns {sorted(unknown)}; expected {', '.join(CSV_COLUMNS)}")
    created: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"importing {path.name}", total=len(rows))
        for line, row in enumerate(rows, start=2):
            try:
                body = _charger_body(row)
                charger = api.call("POST", "/api/chargers", body)
                created.append(
                    {
                        "line": line,
                        "id": charger["id"],
                        "ocppId": charger["ocppId"],
                        "password": charger.get("password"),
                    }
                )
            except (ApiError, ValueError) as exc:
                failed.append({"line": line, "ocppId": row.get("ocppId"), "error": str(exc)})
            progress.advance(task)
    return {"created": created, "failed": failed}


def _charger_body(row: dict[str, str]) -> dict[str, Any]:
    if not row.get("ocppId") or not row.get("ports"):
        raise ValueError("ocppId and ports are required")
    body: dict[str, Any] = {
        "ocppId": row["ocppId"],
        "ports": [{"portNumber": n} for n in range(1, int(row["ports"]) + 1)],
    }
    for column in ("ocppVersion", "externalId", "serialNumber", "password"):
        if row.get(column):
            body[column] = row[column]
    return body


def run(args: argparse.Namespace, api: Api, out: Out) -> None:
    what, action = args.what, args.action
    body: dict[str, Any]
    if what == "accounts":
        if action == "list":
            out.show(api.every("/api/admin/accounts"), ACCOUNT_COLUMNS, "accounts")
        elif action == "create":
            out.show(api.call("POST", "/api/admin/accounts", {"name": args.name}), ACCOUNT_COLUMNS, "account created")
        elif action == "get":
            out.show(api.call("GET", f"/api/admin/accounts/{args.id}"), ACCOUNT_COLUMNS, "account")
        elif action == "unknown-id-tags":
            changed = api.call("PATCH", f"/api/admin/accounts/{args.id}", {"unknownIdTags": args.policy})
            out.show(changed, ACCOUNT_COLUMNS, "account")
    elif what == "keys":
        base = f"/api/admin/accounts/{args.account}/api-keys"
        if action == "list":
            out.show(api.every(base), KEY_COLUMNS, f"API keys of account {args.account}")
        elif action == "create":
            body = {"name": args.name}
            if args.chargers:
                body["chargerIds"] = [int(c) for c in args.chargers.split(",")]
            key = api.call("POST", base, body)
            out.done(f"API key {key['keyId']} (shown once): {key['apiKey']}", key)
        elif action == "revoke":
            api.call("DELETE", f"{base}/{args.key_id}")
            out.done(f"API key {args.key_id} revoked", {"keyId": args.key_id, "revoked": True})
    elif what == "chargers":
        if action == "list":
            params = {"ocppId": args.ocpp_id} if args.ocpp_id else None
            out.show(api.every("/api/chargers", params), CHARGER_COLUMNS, "chargers")
        elif action == "get":
            out.show(api.call("GET", f"/api/chargers/{args.id}"), CHARGER_COLUMNS, "charger")
        elif action == "create":
            row = {
                "ocppId": args.ocpp_id,
                "ports": str(args.ports),
                "ocppVersion": args.version or "",
                "password": args.password or "",
            }
            charger = api.call("POST", "/api/chargers", _charger_body(row))
            password = f"; password (shown once): {charger['password']}" if charger.get("password") else ""
            out.done(f"charger {charger['id']} {charger['ocppId']} registered{password}", charger)
        elif action == "delete":
            api.call("DELETE", f"/api/chargers/{args.id}")
            out.done(f"charger {args.id} deleted", {"id": args.id, "deleted": True})
        elif action == "import":
            result = import_chargers(api, Path(args.csv), out.console)
            if out.as_json:
                out.console.print_json(json.dumps(result))
            else:
                out.show(
                    result["created"], [(c, _field(c)) for c in ("line", "id", "ocppId", "password")], "registered"
                )
                if result["failed"]:
                    out.show(result["failed"], [(c, _field(c)) for c in ("line", "ocppId", "error")], "failed")
            if result["failed"]:
                raise SystemExit(1)
    elif what == "ports":
        out.show(
            api.call("GET", f"/api/chargers/{args.charger}/ports"), PORT_COLUMNS, f"ports of charger {args.charger}"
        )
    elif what == "access-ids":
        if action == "list":
            params = {"parentIdTag": args.group} if args.group else None
            out.show(api.every("/api/access-ids", params), ACCESS_ID_COLUMNS, "access IDs")
        elif action == "create":
            body = {"ocppIdTag": args.tag, "type": args.type}
            body |= {k: v for k, v in (("parentIdTag", args.group), ("name", args.name)) if v}
            out.show(api.call("POST", "/api/access-ids", body), ACCESS_ID_COLUMNS, "access ID created")
        elif action in ("revoke", "authorize"):
            status = "Revoked" if action == "revoke" else "Authorized"
            changed = api.call("PATCH", f"/api/access-ids/{args.id}", {"authorizationStatus": status})
            out.show(changed, ACCESS_ID_COLUMNS, "access ID")
        elif action == "delete":
            api.call("DELETE", f"/api/access-ids/{args.id}")
            out.done(f"access ID {args.id} deleted", {"id": args.id, "deleted": True})
    elif what == "webhooks":
        if action == "list":
            out.show(api.every("/api/webhooks"), WEBHOOK_COLUMNS, "webhooks")
        elif action == "create":
            body = {"url": args.address} | ({"events": args.events} if args.events else {})
            webhook = api.call("POST", "/api/webhooks", body)
            out.done(f"webhook {webhook['id']}; its signing secret (shown once): {webhook['secret']}", webhook)
        elif action == "delete":
            api.call("DELETE", f"/api/webhooks/{args.id}")
            out.done(f"webhook {args.id} deleted", {"id": args.id, "deleted": True})
        elif action == "deliveries":
            out.show(api.every(f"/api/webhooks/{args.id}/deliveries"), DELIVERY_COLUMNS, f"deliveries of {args.id}")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="evreserve-admin", description=__doc__.splitlines()[0])
    top.add_argument(
        "--url", dest="api_url", default=os.environ.get("EVRESERVE_URL", DEFAULT_URL), help="the API (EVRESERVE_URL)"
    )
    top.add_argument("--key", default=os.environ.get("EVRESERVE_API_KEY"), help="an API key (EVRESERVE_API_KEY)")
    top.add_argument("--json", action="store_true", help="print the API's data as JSON")
    what = top.add_subparsers(dest="what", required=True)

    def actions(name: str, help_: str) -> Any:
        return what.add_parser(name, help=help_).add_subparsers(dest="action", required=True)

    accounts = actions("accounts", "accounts (the admin key; get/unknown-id-tags: also the account's key)")
    accounts.add_parser("list")
    accounts.add_parser("create").add_argument("name")
    accounts.add_parser("get").add_argument("id", type=int)
    policy = accounts.add_parser("unknown-id-tags", help="what chargers tell an unregistered token")
    policy.add_argument("id", type=int)
    policy.add_argument("policy", choices=["Accepted", "Invalid"])

    keys = actions("keys", "an account's API keys")
    for name in ("list", "create", "revoke"):
        command = keys.add_parser(name)
        command.add_argument("account", type=int)
        if name == "create":
            command.add_argument("name")
            command.add_argument("--chargers", help="limit the key to these charger ids (comma-separated)")
        if name == "revoke":
            command.add_argument("key_id")

    chargers = actions("chargers", "chargers")
    chargers.add_parser("list").add_argument("--ocpp-id")
    chargers.add_parser("get").add_argument("id", type=int)
    create = chargers.add_parser("create")
    create.add_argument("ocpp_id")
    create.add_argument("--ports", type=int, default=2)
    create.add_argument("--version", choices=["1.6", "2.0.1"])
    create.add_argument("--password", help="16-40 characters; generated and shown once if omitted")
    chargers.add_parser("delete").add_argument("id", type=int)
    chargers.add_parser("import", help=f"register chargers from a CSV ({', '.join(CSV_COLUMNS)})").add_argument("csv")

    ports = actions("ports", "a charger's ports")
    ports.add_parser("list").add_argument("charger", type=int)

    tokens = actions("access-ids", "drivers' tokens and groups")
    tokens.add_parser("list").add_argument("--group")
    token = tokens.add_parser("create")
    token.add_argument("tag")
    token.add_argument(
        "--type", default="RFID", choices=["RFID", "Vehicle", "Central", "eMAID", "KeyCode", "Local", "MacAddress"]
    )
    token.add_argument("--group", help="parentIdTag")
    token.add_argument("--name")
    for name in ("revoke", "authorize", "delete"):
        tokens.add_parser(name).add_argument("id", type=int)

    hooks = actions("webhooks", "reservation event webhooks")
    hooks.add_parser("list")
    hook = hooks.add_parser("create")
    hook.add_argument("address", metavar="url", help="the receiver (https://, public)")
    hook.add_argument("--events", nargs="+", help="types, e.g. reservation.used (default: all)")
    for name in ("delete", "deliveries"):
        hooks.add_parser(name).add_argument("id")
    return top


def main(
    argv: Sequence[str] | None = None, *, console: Console | None = None, transport: httpx.BaseTransport | None = None
) -> int:
    args = parser().parse_args(argv)
    console = console or Console()
    if not args.key:
        console.print("[red]no API key: give --key or set EVRESERVE_API_KEY[/red]")
        return 2
    api = Api(args.api_url, args.key, transport)
    try:
        run(args, api, Out(args.json, console))
    except ApiError as exc:
        console.print(f"[red]{exc}[/red]")
        return 1
    except (ValueError, OSError) as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach {args.api_url}: {exc}[/red]")
        return 1
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        api.close()
    return 0
