"""What the API's unit tests share: in-memory AWS (moto), seeded data, a fake gateway.

The tables come from template.yaml (``devstack.template``), so they cannot drift from
what the functions run against. The fake gateway stands in for SQS plus a gateway
instance plus a charger: ``send_message`` completes the command at once with the
answer the test chose, exactly as the real gateway would through ``CommandLedger``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
from fixtures.moto_env import mocked_aws

from devstack.template import create_tables, load_template
from evreserve.channel import CommandChannel, CommandEnvelope
from evreserve.models import (
    Account,
    ApiKey,
    Charger,
    Command,
    CommandOutcome,
    Connection,
    ConnectionState,
    OcppVersion,
    OutcomeKind,
    Port,
)
from evreserve.security import hash_api_key
from evreserve.services.bootstrap import Services, build_services
from evreserve.storage.commands import CommandLedger
from evreserve_lambda.settings import FunctionSettings

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "events"

# The world `make run` seeds (devstack/__main__.py) and events/*.json describe: the demo
# account, its first charger (OCPP 1.6) and that charger's two ports.
ACCOUNT_ID = 1
OTHER_ACCOUNT_ID = 2
CHARGER_ID = 1
OCPP_ID = "DEMO-CP-16"
PORT_ID = 1
SECOND_PORT_ID = 2
ACCOUNT_KEY = "evr_test_account_key"
ADMIN_KEY = "evr_test_admin_key"
QUEUE_URL = "http://sqs.local/000000000000/evreserve-gw-i1"

Answer = Callable[[Command], CommandOutcome]


def result(status: str) -> Answer:
    def answer(command: Command) -> CommandOutcome:
        return CommandOutcome(
            kind=OutcomeKind.RESULT, payload={"status": status}, completed_at=datetime.now(UTC), completed_by="i1"
        )

    return answer


def call_error(code: str) -> Answer:
    def answer(command: Command) -> CommandOutcome:
        return CommandOutcome(
            kind=OutcomeKind.CALL_ERROR,
            error_code=code,
            error_description="from the test",
            completed_at=datetime.now(UTC),
            completed_by="i1",
        )

    return answer


def no_answer(kind: OutcomeKind = OutcomeKind.TIMEOUT) -> Answer:
    def answer(command: Command) -> CommandOutcome:
        return CommandOutcome(kind=kind, completed_at=datetime.now(UTC), completed_by="i1")

    return answer


@dataclass
class FakeGateway:
    """SQS + a gateway instance + the charger: answers every command at once."""

    ledger: CommandLedger
    answer: Answer = field(default_factory=lambda: result("Accepted"))
    sent: list[Command] = field(default_factory=list)

    def send_message(self, QueueUrl: str, MessageBody: str) -> dict[str, Any]:
        command = CommandEnvelope.from_json(MessageBody).command
        self.sent.append(command)
        self.ledger.complete(command, self.answer(command))
        return {"MessageId": str(len(self.sent))}


@dataclass
class Stack:
    services: Services
    gateway: FakeGateway
    dynamodb: Any


def start_stack(monkeypatch: Any) -> Iterator[Stack]:
    """moto-backed tables from the template, env vars set, services with a fake gateway."""
    powertools = {"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_NAMESPACE": "EvReserve"}
    with mocked_aws(monkeypatch, powertools):
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        tables = create_tables(dynamodb, "unit", load_template())
        for name, value in tables.items():
            monkeypatch.setenv(name, value)
        settings = FunctionSettings()  # type: ignore[call-arg]
        ledger = CommandLedger(dynamodb, settings.commands_table, settings.reservations_table)
        gateway = FakeGateway(ledger)
        channel = CommandChannel(ledger, gateway, settings, sleep=lambda _s: None)  # type: ignore[arg-type]
        services = build_services(settings, dynamodb=dynamodb, channel=channel)
        yield Stack(services, gateway, dynamodb)


def seed(stack: Stack, *, connected: bool = True, version: OcppVersion = OcppVersion.V16) -> Charger:
    """The world `make run` seeds and events/ describes: account ACCOUNT_ID with charger CHARGER_ID
    (OCPP_ID), its ports PORT_ID (connector 1) and SECOND_PORT_ID (connector 2), and the keys.

    The ids are drawn from the registry's sequences, as the API draws them, so what a test then
    creates through the API gets the next ids and never collides with the seeded ones.
    """
    registry, accounts = stack.services.registry, stack.services.account_store
    now = datetime.now(UTC)
    ids = (accounts.next_id("account"), registry.next_id("charger"), registry.next_id("port"), registry.next_id("port"))
    assert ids == (ACCOUNT_ID, CHARGER_ID, PORT_ID, SECOND_PORT_ID), f"seed() needs a fresh stack, drew {ids}"
    accounts.create_account(Account(id=ACCOUNT_ID, name="Demo operator", created_at=now))
    accounts.put_api_key(
        ApiKey(key_id="acct", key_hash=hash_api_key(ACCOUNT_KEY), name="t", account_id=ACCOUNT_ID, created_at=now)
    )
    accounts.put_api_key(
        ApiKey(key_id="admin", key_hash=hash_api_key(ADMIN_KEY), name="a", account_id=None, created_at=now)
    )
    charger = Charger(
        id=CHARGER_ID,
        account_id=ACCOUNT_ID,
        ocpp_id=OCPP_ID,
        ports=(
            Port(id=PORT_ID, port_number=1, name="Left", connector_type="cCCS2", maximum_power_kw=150.0),
            Port(id=SECOND_PORT_ID, port_number=2, name="Right", connector_type="cType2", maximum_power_kw=22.0),
        ),
        created_at=now,
        updated_at=now,
    )
    registry.create_charger(charger)
    if connected:
        connect(stack, CHARGER_ID, version)
    return charger


def add_other_account(stack: Stack) -> Account:
    """Account OTHER_ACCOUNT_ID, the next one the sequence gives (as the next account made on `make run`'s)."""
    accounts = stack.services.account_store
    account_id = accounts.next_id("account")
    assert account_id == OTHER_ACCOUNT_ID, f"add_other_account() after seed() only, drew {account_id}"
    account = Account(id=account_id, name="Other", created_at=datetime.now(UTC))
    accounts.create_account(account)
    return account


def connect(stack: Stack, charger_id: int, version: OcppVersion = OcppVersion.V16) -> None:
    stack.services.registry.register_connection(
        charger_id,
        Connection(
            state=ConnectionState.CONNECTED,
            timestamp=datetime.now(UTC),
            session_id=f"s-{charger_id}",
            instance_id="i1",
            queue_url=QUEUE_URL,
            protocol=version,
        ),
    )


def principal_context(account_id: int | None = ACCOUNT_ID, charger_ids: list[int] | None = None) -> dict[str, str]:
    return {
        "keyId": "acct" if account_id is not None else "admin",
        "accountId": "" if account_id is None else str(account_id),
        "isAdmin": "false" if account_id is not None else "true",
        "chargerIds": json.dumps(charger_ids),
        "principalId": "acct",
    }


def load_event(name: str, *, body: Any = None, context: dict[str, str] | None = None, **changes: Any) -> dict[str, Any]:
    """A sample event from events/, optionally with another body or authorizer context."""
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    if body is not None:
        event["body"] = body if isinstance(body, str) else json.dumps(body)
    if context is not None:
        event["requestContext"]["authorizer"] = context
    event.update(changes)
    return event


def future(hours: float = 2) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


class LambdaContext:
    function_name = "test"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:test"
    aws_request_id = "req-1"


def invoke(handler: Callable[[dict[str, Any], Any], dict[str, Any]], event: dict[str, Any]) -> tuple[int, Any]:
    answer = handler(event, LambdaContext())
    body = answer.get("body")
    return answer["statusCode"], json.loads(body) if body else None
