"""Webhook deliveries: the URL and address rules, the retry schedule, and the deliverer.

The deliverer runs against in-memory DynamoDB and SQS (moto) and POSTs to real HTTP
receivers on 127.0.0.1, so what crosses the wire (headers, body, signature, timeouts,
redirects) is what a partner's server would see.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from api_harness import LambdaContext
from fixtures.functions import load_function
from fixtures.moto_env import mocked_aws

from evreserve import signing
from evreserve.errors import InvalidRequest
from evreserve.events import EventType
from evreserve.storage.webhooks import WebhookStore
from evreserve.webhooks import (
    Delivery,
    DeliveryStatus,
    RetrySchedule,
    Webhook,
    address_allowed,
    check_url,
    queue_delay,
)
from evreserve_lambda.webhook_post import post

# -- rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("127.0.0.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd12::1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:93.184.216.34", True),
        ("2002:0a00:0001::1", False),  # 6to4 of 10.0.0.1
    ],
)
def test_only_public_addresses_are_allowed(address: str, allowed: bool):
    assert address_allowed(ipaddress.ip_address(address), allow_loopback=False) is allowed


def test_loopback_is_allowed_only_where_the_local_stack_says_so():
    assert address_allowed(ipaddress.ip_address("127.0.0.1"), allow_loopback=True)
    assert address_allowed(ipaddress.ip_address("::1"), allow_loopback=True)
    assert not address_allowed(ipaddress.ip_address("10.0.0.1"), allow_loopback=True)


def test_the_local_stack_may_use_plain_http_to_this_machine_only():
    assert check_url("http://127.0.0.1:8787/hooks", allow_local_http=True) == "http://127.0.0.1:8787/hooks"
    assert check_url("http://localhost:8787/", allow_local_http=True)
    with pytest.raises(InvalidRequest):
        check_url("http://partner.example.com/", allow_local_http=True)
    with pytest.raises(InvalidRequest):
        check_url("http://127.0.0.1:8787/hooks", allow_local_http=False)
    assert check_url("https://partner.example.com/h?x=1", allow_local_http=False)


def test_retries_double_from_30_s_to_an_hour_for_at_least_a_day():
    schedule = RetrySchedule()
    assert [schedule.delay(n) for n in range(1, 10)] == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    # A receiver down for an hour gets the event within about an hour and 4 minutes.
    waited, attempt = 0.0, 1
    while waited < 3600:
        waited += schedule.delay(attempt)
        attempt += 1
    assert waited == 3810 and attempt == 8  # the 8th attempt, 63.5 min after the first
    assert not schedule.gives_up(0, 86399) and schedule.gives_up(0, 86400)
    assert schedule.delay(10_000) == 3600
    assert queue_delay(2000.0, 1000.0) == 900 and queue_delay(1000.5, 1000.0) == 1 and queue_delay(10, 1000) == 0


# -- a receiver ------------------------------------------------------------------------------


class Receiver:
    """An HTTP server on 127.0.0.1 answering what the test sets, recording what it got."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        self.delay_s = 0.0
        self.location: str | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append(({k: v for k, v in self.headers.items()}, body))
                time.sleep(receiver.delay_s)
                self.send_response(receiver.status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks?src=test"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def test_post_sends_the_body_and_headers_and_reads_the_status(receiver: Receiver):
    receiver.status = 204
    answer = post(receiver.url, b'{"a":1}', {"Content-Type": "application/json", "X-T": "1"}, allow_loopback=True)
    assert answer.delivered and answer.status == 204
    ((headers, body),) = receiver.requests
    assert body == b'{"a":1}' and headers["X-T"] == "1" and headers["Content-Type"] == "application/json"
    assert headers["Host"] == receiver.url.split("/")[2]


def test_post_refuses_a_loopback_receiver_unless_allowed(receiver: Receiver):
    answer = post(receiver.url, b"{}", {}, allow_loopback=False)
    assert answer.status is None and "may not reach" in (answer.error or "")
    named = receiver.url.replace("127.0.0.1", "localhost")
    assert post(named, b"{}", {}, allow_loopback=False).status is None
    assert receiver.requests == []


def test_post_gives_up_at_its_timeout_and_follows_no_redirect(receiver: Receiver):
    receiver.delay_s = 2.0
    started = time.monotonic()
    answer = post(receiver.url, b"{}", {}, allow_loopback=True, timeout_s=0.5)
    assert answer.status is None and answer.error == "no answer within the timeout"
    assert time.monotonic() - started < 1.5
    receiver.delay_s, receiver.status, receiver.location = 0.0, 302, "http://127.0.0.1:1/elsewhere"
    answer = post(receiver.url, b"{}", {}, allow_loopback=True)
    assert (answer.status, answer.delivered, answer.error) == (302, False, "HTTP 302")


def test_post_to_nobody_is_a_connection_failure():
    answer = post("http://127.0.0.1:9/hooks", b"{}", {}, allow_loopback=True, timeout_s=2)
    assert answer.status is None and answer.error


# -- the deliverer ---------------------------------------------------------------------------


@pytest.fixture
def deliverer(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    env = {
        "WEBHOOKS_TABLE": "webhooks",
        "WEBHOOK_ALLOW_LOCAL_HTTP": "true",
        **{name: "unused" for name in ("REGISTRY_TABLE", "RESERVATIONS_TABLE", "COMMANDS_TABLE")},
        **{name: "unused" for name in ("OCPP_MESSAGES_TABLE", "RATE_LIMIT_TABLE")},
    }
    with mocked_aws(monkeypatch, env):
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(
            TableName="webhooks",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        )
        sqs = boto3.client("sqs", region_name="us-east-1")
        queue = sqs.create_queue(QueueName="deliveries")["QueueUrl"]
        monkeypatch.setenv("WEBHOOK_QUEUE_URL", queue)
        function = load_function("deliverer")
        store = WebhookStore(dynamodb, "webhooks")
        recording = RecordingSqs(sqs)
        function.use_clients(recording, store, function.DelivererSettings())
        yield {"function": function, "store": store, "sqs": recording, "queue": queue}


def subscribe(deliverer: dict[str, Any], url: str) -> Webhook:
    webhook = Webhook(
        webhook_id="wh_test",
        account_id=7,
        url=url,
        events=tuple(EventType),
        secret="whsec_unit",
        created_at=datetime.now(UTC),
    )
    deliverer["store"].create(webhook)
    return webhook


BODY = json.dumps({"id": "evt_1", "type": "reservation.accepted", "accountId": 7, "data": {"reservationId": 1}})


def run(deliverer: dict[str, Any], *deliveries: Delivery) -> dict[str, Any]:
    records = [{"messageId": str(n), "body": d.to_message()} for n, d in enumerate(deliveries)]
    return deliverer["function"].handler({"Records": records}, LambdaContext())


class RecordingSqs:
    """The real (moto) client, with each SendMessage noted: a delayed message cannot be received to look at."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.sent: list[tuple[Delivery, int]] = []

    def send_message(self, **kwargs: Any) -> Any:
        self.sent.append((Delivery.from_message(kwargs["MessageBody"]), int(kwargs.get("DelaySeconds", 0))))
        return self.client.send_message(**kwargs)


def requeued(deliverer: dict[str, Any]) -> list[tuple[Delivery, int]]:
    """The messages the deliverer put back on the queue, with their DelaySeconds."""
    return list(deliverer["sqs"].sent)


def log(deliverer: dict[str, Any]) -> list[Any]:
    return deliverer["store"].deliveries("wh_test", limit=100, cursor=None).items


def test_a_2xx_is_delivered_signed_with_the_event_id(deliverer, receiver: Receiver):
    webhook = subscribe(deliverer, receiver.url)
    assert run(deliverer, Delivery("wh_test", 7, "evt_1", "reservation.accepted", BODY)) == {"batchItemFailures": []}
    ((headers, body),) = receiver.requests
    assert body == BODY.encode() and headers["Evreserve-Event-Id"] == "evt_1"
    assert signing.verify(webhook.secret, headers["Evreserve-Signature"], body, int(time.time()))
    assert headers["Content-Type"] == "application/json"
    (entry,) = log(deliverer)
    assert (entry.status, entry.response_status, entry.attempt, entry.error) == (DeliveryStatus.DELIVERED, 200, 1, None)
    assert requeued(deliverer) == []


def test_a_failure_is_logged_and_queued_again_with_the_next_delay(deliverer, receiver: Receiver):
    subscribe(deliverer, receiver.url)
    receiver.status = 500
    before = time.time()
    run(deliverer, Delivery("wh_test", 7, "evt_1", "reservation.accepted", BODY))
    ((again, delay),) = requeued(deliverer)
    assert again.attempt == 2 and again.body == BODY and again.event_id == "evt_1"
    assert again.first_at is not None and before <= again.first_at <= time.time()
    assert again.not_before == pytest.approx(again.first_at + 30, abs=2) and delay in (30, 31)
    (entry,) = log(deliverer)
    assert (entry.status, entry.response_status, entry.error) == (DeliveryStatus.RETRYING, 500, "HTTP 500")


def test_after_the_window_the_delivery_is_marked_failed(deliverer, receiver: Receiver):
    subscribe(deliverer, receiver.url)
    receiver.status = 503
    old = Delivery("wh_test", 7, "evt_1", "reservation.accepted", BODY, attempt=31, first_at=time.time() - 86401)
    run(deliverer, old)
    assert requeued(deliverer) == []
    (entry,) = log(deliverer)
    assert (entry.status, entry.attempt, entry.response_status) == (DeliveryStatus.FAILED, 31, 503)


def test_a_delivery_not_yet_due_waits_another_hop_without_a_request(deliverer, receiver: Receiver):
    subscribe(deliverer, receiver.url)
    due = time.time() + 3000
    waiting = Delivery("wh_test", 7, "evt_1", "reservation.accepted", BODY, attempt=9, first_at=1.0, not_before=due)
    run(deliverer, waiting)
    assert receiver.requests == [] and log(deliverer) == []
    ((again, delay),) = requeued(deliverer)
    assert again == waiting and delay == 900


def test_a_deleted_webhooks_delivery_is_dropped(deliverer, receiver: Receiver):
    run(deliverer, Delivery("wh_gone", 7, "evt_1", "reservation.accepted", BODY))
    assert receiver.requests == [] and requeued(deliverer) == []


def test_an_unreadable_message_stays_on_the_queue_for_its_dead_letter_queue(deliverer):
    answer = deliverer["function"].handler({"Records": [{"messageId": "m1", "body": "{}"}]}, LambdaContext())
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m1"}]}


def test_a_batch_of_slow_receivers_is_delivered_side_by_side(deliverer, receiver: Receiver):
    subscribe(deliverer, receiver.url)
    receiver.delay_s = 0.5
    started = time.monotonic()
    run(deliverer, *(Delivery("wh_test", 7, f"evt_{n}", "reservation.accepted", BODY) for n in range(8)))
    assert len(receiver.requests) == 8 and {e.status for e in log(deliverer)} == {DeliveryStatus.DELIVERED}
    assert time.monotonic() - started < 3.0
