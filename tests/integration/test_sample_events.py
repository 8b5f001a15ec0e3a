"""Every events/ sample, invoked as a developer would (``make invoke``) against a real ``make run``.

``python -m devstack`` runs here as ``make run`` does (its own stand-ins, the demo world it
seeds, its printed keys and passwords), a simulated DEMO-CP-16 connects with the printed
password, and each sample goes to the local API's Lambda Invoke endpoint through
``devstack.invoke``, in an order where what a sample names exists (reads, creations,
changes, a reservation and its cancellation, deletions). Each answer is checked.

Changed on the way, as the samples' own notes (docs/deploy.md) tell a developer to do:
the ids the stack generates (a webhook's, an API key's) are put into the samples that
name one; the reservation's expiry is moved to two hours from now, so the check does not
depend on the calendar; the authorizer sample is also sent with the demo key.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from devstack import REPO_ROOT
from devstack.gateways import free_port
from devstack.invoke import invoke
from devstack.template import load_template

EVENTS = REPO_ROOT / "events"
BIN = Path(sys.executable).parent
STARTUP_S = 240


class RunningStack:
    """``python -m devstack`` in a child process, its output collected line by line."""

    def __init__(self, env_json: Path) -> None:
        self.api_port, self.gateway_port = free_port(), free_port()
        self.env_json = env_json
        environ = {**os.environ, "API_PORT": str(self.api_port), "GATEWAY_PORT": str(self.gateway_port)}
        environ["EVRESERVE_ENV_JSON"] = str(env_json)  # not the developer's .local/env.json
        for name in [n for n in environ if n.startswith("AWS_ENDPOINT_URL")]:
            environ.pop(name)  # its own stand-ins, not the test session's
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "devstack"],
            cwd=REPO_ROOT,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def wait_ready(self) -> str:
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            text = "\n".join(self.lines)
            if "Ctrl-C stops everything." in text:
                return text
            assert self.process.poll() is None, text[-4000:]
            time.sleep(0.5)
        raise AssertionError("make run did not come up:\n" + "\n".join(self.lines[-60:]))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # Ctrl-C, as a developer stops it
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningStack, dict[str, str]]]:
    stack = RunningStack(tmp_path_factory.mktemp("make-run") / "env.json")
    simulator: subprocess.Popen[str] | None = None
    try:
        banner = stack.wait_ready()
        demo_key = re.search(r"Demo account 1 key\s+(\S+)", banner)
        password = re.search(r"id 1\s+DEMO-CP-16\s+OCPP 1\.6\s+password (\S+)", banner)
        assert demo_key and password, banner
        simulator = subprocess.Popen(
            [
                *(str(BIN / "evreserve-simulator"), "--url", f"ws://127.0.0.1:{stack.gateway_port}/ocpp"),
                *("--id", "DEMO-CP-16", "--password", password[1], "--version", "1.6", "--ports", "2"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 30
        while "DEMO-CP-16" not in "\n".join(line for line in stack.lines if "connected" in line):
            assert time.monotonic() < deadline, "the simulated charger did not connect:\n" + "\n".join(
                stack.lines[-30:]
            )
            time.sleep(0.2)
        yield stack, {"demo_key": demo_key[1]}
    finally:
        if simulator is not None:
            simulator.terminate()
            simulator.wait(timeout=10)
        stack.stop()


def function_of(event: dict[str, Any]) -> str:
    """The template's function behind the sample's route (or the authorizer, for an authorizer event)."""
    resources = load_template()["Resources"]
    if event.get("type") == "REQUEST" and "methodArn" in event:
        return "AuthorizerFunction"
    for logical_id, resource in resources.items():
        for source in ((resource.get("Properties") or {}).get("Events") or {}).values():
            props = source.get("Properties") or {}
            if source.get("Type") == "Api" and (props.get("Path"), props.get("Method")) == (
                event["resource"],
                event["httpMethod"],
            ):
                return str(logical_id)
    raise AssertionError(f"no function serves {event['httpMethod']} {event['resource']}")


def sample(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text(encoding="utf-8"))
    return event


def with_id(event: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """The sample with a generated id put where it names one (path, context, path parameters)."""
    return json.loads(json.dumps(event).replace(f"/{old}", f"/{new}").replace(f'"{old}"', f'"{new}"'))


def call(api: str, event: dict[str, Any]) -> tuple[int, Any]:
    result, error = invoke(api, function_of(event), event)
    assert error is None, result
    body = result.get("body")
    try:
        return int(result["statusCode"]), json.loads(body) if body else None
    except ValueError:
        return int(result["statusCode"]), body


#: (sample, status): in an order where what each names exists by then.
READS = [
    ("get-docs.json", 200),
    ("get-openapi.json", 200),
    ("list-accounts.json", 200),
    ("get-account.json", 200),
    ("list-api-keys.json", 200),
    ("list-chargers.json", 200),
    ("get-charger.json", 200),
    ("lookup-charger.json", 200),
    ("list-ports.json", 200),
]
CHANGES = [
    ("update-account.json", 200),
    ("register-charger.json", 201),
    ("add-port.json", 201),
    ("update-port.json", 200),
    ("update-charger.json", 200),
    ("create-access-id.json", 201),
    ("get-access-id.json", 200),
    ("list-access-ids.json", 200),
    ("update-access-id.json", 200),
]
RESERVATION = [
    ("reserve.json", 200),
    ("get-reservation.json", 200),
    ("list-reservations.json", 200),
    ("cancel.json", 200),
    ("list-ocpp-messages.json", 200),
]
DELETIONS = [("delete-access-id.json", 204), ("delete-port.json", 204), ("delete-charger.json", 204)]


def test_every_sample_is_in_the_walk():
    walked = {name for name, _ in READS + CHANGES + RESERVATION + DELETIONS}
    walked |= {"create-api-key.json", "delete-api-key.json", "authorizer.json", "create-account.json"}
    walked |= {n for n in os.listdir(EVENTS) if "webhook" in n}
    assert walked == {p.name for p in EVENTS.glob("*.json")}


def test_every_sample_answers_against_make_run(running: tuple[RunningStack, dict[str, str]]):
    stack, found = running
    api = stack.api
    answers: dict[str, tuple[int, Any]] = {}
    for name, status in READS + CHANGES:
        answers[name] = call(api, sample(name))
        assert answers[name][0] == status, (name, answers[name])
    assert answers["get-charger.json"][1]["data"]["ocppId"] == "DEMO-CP-16"
    assert [p["id"] for p in answers["list-ports.json"][1]["data"]] == [1, 2]
    assert answers["get-account.json"][1]["data"]["id"] == 1

    created = call(api, sample("create-account.json"))
    assert created[0] == 201 and created[1]["data"]["id"] == 2, created
    key = call(api, sample("create-api-key.json"))
    assert key[0] == 201 and key[1]["data"]["chargerIds"] == [1], key

    reserve = sample("reserve.json")
    body = json.loads(reserve["body"])
    body["expiryDate"] = (datetime.now(UTC) + timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    reserve["body"] = json.dumps(body)
    assert call(api, reserve) == (200, {"data": {"status": "Accepted"}})
    for name, status in RESERVATION[1:]:
        answers[name] = call(api, sample(name))
        assert answers[name][0] == status, (name, answers[name])
    assert answers["get-reservation.json"][1]["data"]["reservationId"] == body["reservationId"]
    assert answers["cancel.json"][1] == {"data": {"status": "Accepted"}}

    webhook = call(api, sample("create-webhook.json"))
    assert webhook[0] == 201, webhook
    sample_webhook_id = sample("get-webhook.json")["pathParameters"]["webhookId"]
    assert call(api, sample("get-webhook.json"))[0] == 404, "the sample's own id names no webhook here"
    for name, status in [
        ("get-webhook.json", 200),
        ("list-webhooks.json", 200),
        ("list-webhook-deliveries.json", 200),
        ("delete-webhook.json", 204),
    ]:
        event = with_id(sample(name), sample_webhook_id, webhook[1]["data"]["id"])
        assert call(api, event)[0] == status, name

    denied, error = invoke(api, "AuthorizerFunction", sample("authorizer.json"))
    assert error == "Unhandled" and denied["errorMessage"] == "Unauthorized", "the sample's key is not make run's"
    authorizer = sample("authorizer.json")
    authorizer["headers"]["Authorization"] = f"Bearer {found['demo_key']}"
    authorizer["multiValueHeaders"]["Authorization"] = [f"Bearer {found['demo_key']}"]
    allowed, error = invoke(api, "AuthorizerFunction", authorizer)
    assert error is None and allowed["context"]["accountId"] in (1, "1"), allowed

    for name, status in DELETIONS:
        assert call(api, sample(name))[0] == status, name
    revoke = with_id(sample("delete-api-key.json"), "acct", key[1]["data"]["keyId"])
    assert call(api, revoke)[0] == 204

    # sam local's env.json: this run's tables, and endpoints that answer (DynamoDB Local's).
    written = json.loads(stack.env_json.read_text(encoding="utf-8"))
    assert written["ReservationsFunction"]["REGISTRY_TABLE"]
    endpoint = urlsplit(written["ReservationsFunction"]["AWS_ENDPOINT_URL_DYNAMODB"])
    assert written["Parameters"]["AWS_ENDPOINT_URL_DYNAMODB"] == endpoint.geturl()
    with socket.create_connection((str(endpoint.hostname), int(endpoint.port or 80)), timeout=5):
        pass


def test_make_invoke_shows_the_answer_as_http(running: tuple[RunningStack, dict[str, str]]):
    """``make invoke``'s command line: a directory name works, the answer reads as HTTP, errors exit non-zero."""
    stack, _ = running

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "devstack.invoke", *args, "--api", stack.api]
        return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)

    shown = run("chargers", "events/list-chargers.json")  # the walk above deleted charger 1, not charger 2
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("HTTP 200\n") and '"ocppId": "DEMO-CP-201"' in shown.stdout
    missing = run("nosuch", "events/list-ports.json")
    assert missing.returncode != 0 and "no function 'nosuch'" in missing.stderr
    nothing = subprocess.run(
        [
            sys.executable,
            "-m",
            "devstack.invoke",
            "chargers",
            "events/list-ports.json",
            "--api",
            f"http://127.0.0.1:{free_port()}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert nothing.returncode == 2 and "make run" in nothing.stderr
