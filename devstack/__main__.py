"""``make run``: the whole service on this machine, until Ctrl-C.

Starts DynamoDB Local and the SQS server with the tables and queues of template.yaml,
the gateway instance(s) as child processes (``GATEWAY_INSTANCES`` > 1 puts a TCP
balancer in front of them, as the NLB does in AWS), and the local API; then seeds a
demo account with an API key and two chargers through the API itself, as an operator
would, and prints what is needed to try it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from devstack import HOST, REPO_ROOT
from devstack.balancer import TcpBalancer
from devstack.gateway_feed import GatewayFeed
from devstack.gateways import GatewayProcess, free_port
from devstack.invoke import ENV_JSON, write_env_json
from devstack.local_api import LocalApi
from devstack.localaws import LocalAws
from evreserve.security import generate_api_key
from evreserve.services.accounts import ensure_admin_key
from evreserve.storage.accounts import AccountStore

LOG = logging.getLogger("devstack")
LOG_DIR = REPO_ROOT / ".local" / "logs"

#: Demo chargers: one of each OCPP version, two ports each.
DEMO_CHARGERS = (("DEMO-CP-16", "1.6"), ("DEMO-CP-201", "2.0.1"))


@dataclass
class Demo:
    admin_key: str
    account_id: int = 0
    account_key: str = ""
    chargers: list[dict[str, Any]] = field(default_factory=list)


def _call(api_url: str, key: str, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(  # noqa: S310 - our own loopback URL
        api_url + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.loads(response.read())["data"]
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{method} {path} -> {exc.code} {exc.read().decode()}") from exc


def seed(api_url: str, accounts: AccountStore, admin_key: str) -> Demo:
    """The admin key in the registry; then, through the API: an account, its key, its chargers."""
    ensure_admin_key(accounts, admin_key)
    demo = Demo(admin_key=admin_key)
    account = _call(api_url, admin_key, "POST", "/api/admin/accounts", {"name": "Demo operator"})
    demo.account_id = account["id"]
    issued = _call(api_url, admin_key, "POST", f"/api/admin/accounts/{demo.account_id}/api-keys", {"name": "demo"})
    demo.account_key = issued["apiKey"]
    for ocpp_id, version in DEMO_CHARGERS:
        charger = _call(
            api_url,
            demo.account_key,
            "POST",
            "/api/chargers",
            {
                "ocppId": ocpp_id,
                "ocppVersion": version,
                "ports": [
                    {"portNumber": 1, "name": "Left", "connectorType": "cCCS2", "maximumPowerKw": 150},
                    {"portNumber": 2, "name": "Right", "connectorType": "cType2", "maximumPowerKw": 22},
                ],
            },
        )
        demo.chargers.append(charger)
    return demo


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def banner(api_url: str, gateway_url: str, demo: Demo, logs: Path) -> str:
    expiry = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    first = demo.chargers[0]
    lines = [
        "",
        "evreserve is running locally.",
        f"  API      {api_url}    (Swagger UI: {api_url}/api/docs)",
        f"  Gateway  {gateway_url}/{{ocppId}}    (health: {gateway_url.replace('ws://', 'http://')[:-5]}/health)",
        f"  Logs     {logs}",
        "",
        f"  Admin API key      {demo.admin_key}",
        f"  Demo account {demo.account_id} key  {demo.account_key}",
        "",
        "  Demo chargers (Basic auth: username = ocppId):",
    ]
    for charger in demo.chargers:
        ports = ", ".join(f"portId {p['id']} = #{p['portNumber']}" for p in charger["ports"])
        lines.append(
            f"    id {charger['id']}  {charger['ocppId']:<12} OCPP {charger['ocppVersion']:<5}"
            f" password {charger['password']}  ({ports})"
        )
    version = first["ocppVersion"]
    lines += [
        "",
        "  Connect a simulated charger (another terminal):",
        f"    .venv/bin/evreserve-simulator --url {gateway_url} --id {first['ocppId']}"
        f" --password {first['password']} --version {version} --ports 2",
        "",
        "  Reserve its first port:",
        f'    curl -X POST "{api_url}/api/ocpp/reservations" \\',
        f'      -H "Authorization: Bearer {demo.account_key}" \\',
        '      -H "Content-Type: application/json" \\',
        f'      -d \'{{"portId": {first["ports"][0]["id"]}, "expiryDate": "{expiry}",'
        ' "idTag": "RFID001", "reservationId": 1001}\'',
        "",
        "  Cancel it:",
        f'    curl -X POST "{api_url}/api/ocpp/reservations/cancel" \\',
        f'      -H "Authorization: Bearer {demo.account_key}" \\',
        '      -H "Content-Type: application/json" \\',
        f'      -d \'{{"chargerId": {first["id"]}, "reservationId": 1001}}\'',
        "",
        "  Watch its events arrive, signed (another terminal; subscribes a webhook, removes it on Ctrl-C):",
        f"    .venv/bin/python -m devstack.webhook_echo --api {api_url} --key {demo.account_key}",
        "  Webhooks here may be http://127.0.0.1; retries start at 2 s (30 s deployed).",
        "",
        "  The operators' command line (chargers, ports, access IDs, webhooks; --json for scripts):",
        f"    export EVRESERVE_URL={api_url} EVRESERVE_API_KEY={demo.account_key}",
        "    .venv/bin/evreserve-admin chargers list",
        "",
        "  Invoke a function with a sample event (events/ describes this demo world; no Docker):",
        "    make invoke FUNCTION=ChargersFunction EVENT=events/get-charger.json",
        f"  With Docker: sam local invoke --env-vars {_shown(ENV_JSON)} (docs/deploy.md).",
        "",
        "  Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def in_use(port: int) -> bool:
    """Whether something listens on ``HOST:port`` already."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((HOST, port)) == 0


async def serve() -> None:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    api_port = int(os.environ.get("API_PORT", "3000"))
    gateway_port = int(os.environ.get("GATEWAY_PORT", "9000"))
    instances = max(1, int(os.environ.get("GATEWAY_INSTANCES", "1")))
    admin_key = os.environ.get("ADMIN_API_KEY") or generate_api_key()[0]

    taken = [
        f"{name} {port}" for name, port in (("API_PORT", api_port), ("GATEWAY_PORT", gateway_port)) if in_use(port)
    ]
    if taken:
        raise SystemExit(
            f"Port {' and '.join(taken)} is in use on {HOST} (another `make run`?). Stop it, or choose others:"
            " API_PORT=3001 GATEWAY_PORT=9001 make run"
        )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    with LocalAws(prefix="local", log_dir=LOG_DIR) as aws:
        # The message log shows a walk-through's messages within 2 s; deployed, batches
        # wait 300 s (the cost model in docs/scaling.md). An explicit setting wins.
        env = {"GATEWAY_MESSAGE_LOG_FLUSH_S": "2", **os.environ, **aws.env()}
        os.environ.update(aws.env())
        ports = [gateway_port] if instances == 1 else [free_port() for _ in range(instances)]
        gateways = [
            GatewayProcess(f"local-{i + 1}", port, LOG_DIR / f"gateway-{i + 1}.log") for i, port in enumerate(ports)
        ]
        balancer: TcpBalancer | None = None
        feed = GatewayFeed([g.log_path for g in gateways], lambda line: print(line, flush=True))
        feed_task: asyncio.Task[None] | None = None
        try:
            for gateway in gateways:
                gateway.start(env)
            for gateway in gateways:
                await asyncio.to_thread(gateway.wait_healthy)
            if instances > 1:
                balancer = TcpBalancer(ports, port=gateway_port)
                await balancer.start()
            # Retries a developer can watch: 2 s doubling to a minute (deployed: 30 s to an hour).
            # An explicit setting wins.
            retries = {"WEBHOOK_RETRY_BASE_S": "2", "WEBHOOK_RETRY_MAX_S": "60"}
            retries = {name: os.environ.get(name, value) for name, value in retries.items()}
            with LocalApi(port=api_port, environment=retries) as api:
                assert api.definition is not None
                write_env_json({f: s.environment for f, s in api.definition.functions.items()}, aws.env())
                accounts = AccountStore(aws.dynamodb.client(), aws.resources["REGISTRY_TABLE"])
                demo = await asyncio.to_thread(seed, api.url, accounts, admin_key)
                print(banner(api.url, f"ws://{HOST}:{gateway_port}/ocpp", demo, LOG_DIR), flush=True)
                feed_task = asyncio.create_task(feed.run(stop))
                await stop.wait()
                print("stopping...", flush=True)
        finally:
            if feed_task is not None:
                await feed_task
            if balancer is not None:
                await balancer.stop()
            await asyncio.gather(*(asyncio.to_thread(g.stop) for g in gateways))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve())


if __name__ == "__main__":
    main()
