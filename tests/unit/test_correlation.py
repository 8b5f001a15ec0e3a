"""One log query follows a reservation: the API request's id and trace ride in the command to the gateway's lines."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from api_harness import LambdaContext, Stack, load_event, seed, start_stack
from aws_lambda_powertools import Logger
from fixtures.functions import load_function

from evreserve import correlation
from evreserve.models import Command, CommandAction, OcppVersion
from evreserve_gateway.commands.context import command_context
from evreserve_gateway.logs import JsonFormatter
from evreserve_lambda import app as glue

TRACE = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    for stack in start_stack(monkeypatch):
        glue.use_services(stack.services)
        yield stack
    glue.use_services(None)


def test_trace_root_reads_the_x_ray_header():
    assert correlation.trace_root(TRACE) == "1-5759e988-bd862e3fe1be46a994272793"
    assert correlation.trace_root("Parent=1;Sampled=0") is None and correlation.trace_root(None) is None


def test_a_reserve_request_sends_a_command_carrying_its_request_id_and_trace(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
):
    seed(stack)
    monkeypatch.setenv("_X_AMZN_TRACE_ID", TRACE)
    request = load_event("reserve.json")
    body = json.loads(request["body"])
    body["expiryDate"] = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    request["body"] = json.dumps(body)
    request["requestContext"]["requestId"] = "req-0042"
    answer = load_function("reservations").handler(request, LambdaContext())
    assert answer["statusCode"] == 200, answer["body"]
    (command,) = stack.gateway.sent
    assert (command.correlation_id, command.xray_trace_id) == ("req-0042", "1-5759e988-bd862e3fe1be46a994272793")
    assert correlation.current() is None, "bound for one invocation only"


def test_the_gateway_logs_a_command_under_powertools_keys():
    """The gateway's line has the keys a function's Powertools line has, and the same correlation keys."""
    stream = io.StringIO()
    # A service of its own: a Logger named like one another test built reuses that one's state.
    powertools = Logger(service=f"correlation-{uuid.uuid4().hex}", logger_handler=logging.StreamHandler(stream))
    powertools.set_correlation_id("req-0042")
    powertools.info("reserve")
    function_line = json.loads(stream.getvalue())

    record = logging.makeLogRecord({"msg": "command completed", "levelname": "INFO", "name": "evreserve_gateway"})
    now = datetime.now(UTC)
    command = Command(
        command_id="c1",
        account_id=1,
        charger_id=1,
        ocpp_id="DEMO-CP-16",
        ocpp_version=OcppVersion.V16,
        action=CommandAction.RESERVE_NOW,
        payload={},
        instance_id="i1",
        session_id="s1",
        created_at=now,
        deadline=now,
        request_hash="h",
        correlation_id="req-0042",
    )
    for key, value in command_context(command).items():
        setattr(record, key, value)
    gateway_line = json.loads(JsonFormatter().format(record))
    assert set(function_line) - {"xray_trace_id"} <= set(gateway_line), "the functions' standard keys"
    assert gateway_line["correlation_id"] == function_line["correlation_id"] == "req-0042"
    timestamp = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}[+-]\d{4}$")
    assert timestamp.match(gateway_line["timestamp"]) and timestamp.match(function_line["timestamp"])
    assert gateway_line["service"] == "evreserve-gateway"


def test_a_command_with_a_field_this_version_does_not_know_is_read():
    """From this version on, newer functions may add a field to a command mid-upgrade: it is ignored.
    (The gateways before this version refused unknown fields: docs/deploy.md gives the upgrade order.)"""
    from evreserve.channel import CommandEnvelope

    now = datetime.now(UTC).isoformat()
    body = {
        "v": 1,
        "command": {
            "command_id": "c1",
            "account_id": 1,
            "charger_id": 1,
            "ocpp_id": "X",
            "ocpp_version": "1.6",
            "action": "ReserveNow",
            "payload": {},
            "instance_id": "i1",
            "session_id": "s1",
            "created_at": now,
            "deadline": now,
            "request_hash": "h",
            "a_field_from_the_future": 1,
        },
    }
    assert CommandEnvelope.from_json(json.dumps(body)).command.command_id == "c1"
