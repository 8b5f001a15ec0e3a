"""evreserve.awsjson's client against the local stand-ins (answers as botocore gives them),
and against a scripted server for what the stand-ins never do (5xx, a bad CRC32, a
dropped connection, silence)."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devstack.localaws import LocalAws
from evreserve import awsjson
from evreserve.aws import ClientError, adopt, unavailable_on_transport_errors
from evreserve.errors import DependencyUnavailable

pytestmark = pytest.mark.integration


def client(service: awsjson.Service, **kwargs: Any) -> awsjson.JsonClient:
    return awsjson.JsonClient(service, region="us-east-1", sleep=lambda _: None, **kwargs)


@pytest.fixture
def table(local_aws: LocalAws) -> str:
    return local_aws.resources["REGISTRY_TABLE"]


def test_dynamodb_answers_as_botocore_gives_them(local_aws: LocalAws, table: str) -> None:
    """Items (blobs as bytes), queries and the error of a failed condition, side by side."""
    ours, theirs = client(awsjson.DYNAMODB), local_aws.dynamodb.client()
    key = {"pk": {"S": f"t#{uuid.uuid4()}"}, "sk": {"S": "x"}}
    item = {**key, "blob": {"B": b"\x00\x01\xfe"}, "n": {"N": "22.5"}, "m": {"M": {"B": {"S": "not a blob"}}}}
    ours.put_item(TableName=table, Item=item)
    got = ours.get_item(TableName=table, Key=key, ConsistentRead=True)
    assert got["Item"] == theirs.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"] == item
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200

    page = ours.query(TableName=table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": key["pk"]})
    assert page["Count"] == 1 and page["Items"] == [item]

    with pytest.raises(ClientError) as failed:
        ours.put_item(
            TableName=table,
            Item=item,
            ConditionExpression="attribute_not_exists(pk)",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    assert failed.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert failed.value.response["Item"] == item  # the old item, blobs decoded there too


def test_a_cancelled_transaction_carries_its_reasons(local_aws: LocalAws, table: str) -> None:
    ours = client(awsjson.DYNAMODB)
    key = {"pk": {"S": f"t#{uuid.uuid4()}"}, "sk": {"S": "x"}}
    ours.put_item(TableName=table, Item=key)
    with pytest.raises(ClientError) as cancelled:
        ours.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": {**key, "sk": {"S": "y"}}}},
                {"Put": {"TableName": table, "Item": key, "ConditionExpression": "attribute_not_exists(pk)"}},
            ]
        )
    assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert [r["Code"] for r in cancelled.value.response["CancellationReasons"]] == ["None", "ConditionalCheckFailed"]


def test_sqs_round_trip_and_its_query_compatible_codes(local_aws: LocalAws) -> None:
    """A message sent and received; a missing queue has the code botocore reports for it."""
    sqs = client(awsjson.SQS)
    url = sqs.create_queue(QueueName=f"awsjson-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    try:
        sqs.send_message(QueueUrl=url, MessageBody="hello")
        messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, MaxNumberOfMessages=1)["Messages"]
        assert [m["Body"] for m in messages] == ["hello"]
    finally:
        sqs.delete_queue(QueueUrl=url)
    with pytest.raises(ClientError) as missing:
        sqs.get_queue_url(QueueName=f"missing-{uuid.uuid4().hex[:8]}")
    theirs = local_aws.sqs.client()
    with pytest.raises(Exception) as botocore_missing:
        theirs.get_queue_url(QueueName=f"missing-{uuid.uuid4().hex[:8]}")
    code = missing.value.response["Error"]["Code"]
    assert code == botocore_missing.value.response["Error"]["Code"]  # type: ignore[attr-defined]
    assert code.endswith("NonExistentQueue")


def test_eventbridge_takes_times_as_datetimes(local_aws: LocalAws) -> None:
    events = client(awsjson.EVENTBRIDGE)
    bus = local_aws.resources["EVENT_BUS_NAME"]
    answer = events.put_events(
        Entries=[
            {
                "EventBusName": bus,
                "Source": "evreserve.test",
                "DetailType": "Probe",
                "Detail": json.dumps({"ok": True}),
                "Time": dt.datetime.now(dt.UTC),
            }
        ]
    )
    assert answer["FailedEntryCount"] == 0 and answer["Entries"][0]["EventId"]


def test_botocore_clients_raise_the_same_errors(local_aws: LocalAws, table: str) -> None:
    """AWS_CLIENT=botocore, or a test's boto3 client: one family of errors for the code to catch."""
    wrapped = adopt(local_aws.dynamodb.client())
    with pytest.raises(ClientError) as failed:
        wrapped.get_item(TableName=f"{table}-missing", Key={"pk": {"S": "x"}, "sk": {"S": "y"}})
    assert failed.value.response["Error"]["Code"] == "ResourceNotFoundException"
    raw = local_aws.dynamodb.client()
    with pytest.raises(ClientError), unavailable_on_transport_errors("DynamoDB"):
        raw.get_item(TableName=f"{table}-missing", Key={"pk": {"S": "x"}, "sk": {"S": "y"}})


# --- a scripted server --------------------------------------------------------------------

Reply = Callable[[http.server.BaseHTTPRequestHandler], None]


def answer(status: int, body: dict[str, Any], headers: dict[str, str] | None = None, crc: bool = True) -> Reply:
    def reply(handler: http.server.BaseHTTPRequestHandler) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("x-amzn-RequestId", "req-1")
        if crc:
            handler.send_header("x-amz-crc32", str(zlib.crc32(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    return reply


def silence(seconds: float) -> Reply:
    def reply(handler: http.server.BaseHTTPRequestHandler) -> None:
        time.sleep(seconds)

    return reply


class Scripted:
    """Answers each request with the next reply of its script (the last repeats)."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.requests: list[dict[str, str]] = []
        self.connections: set[int] = set()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append(dict(self.headers))
                outer.connections.add(self.client_address[1])
                reply = outer.script.pop(0) if len(outer.script) > 1 else outer.script[0]
                reply(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Scripted:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Scripted]:
    # Keys to sign with, whether or not the local stack's environment is in place.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSCRIPTED")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "scripted")
    with Scripted() as server:
        yield server


def test_5xx_and_throttling_are_retried_then_answered(scripted: Scripted) -> None:
    scripted.script = [
        answer(503, {"__type": "ServiceUnavailable"}),
        answer(400, {"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException", "message": "slow down"}),
        answer(200, {"Item": {"pk": {"S": "a"}}}),
    ]
    got = client(awsjson.DYNAMODB, endpoint=scripted.url).get_item(TableName="t", Key={})
    assert got["Item"] == {"pk": {"S": "a"}} and got["ResponseMetadata"]["RetryAttempts"] == 2
    assert [r["X-Amz-Target"] for r in scripted.requests] == ["DynamoDB_20120810.GetItem"] * 3


def test_a_client_error_is_not_retried(scripted: Scripted) -> None:
    scripted.script = [answer(400, {"__type": "com.amazon.coral.validate#ValidationException", "message": "bad"})]
    with pytest.raises(ClientError) as bad:
        client(awsjson.DYNAMODB, endpoint=scripted.url).get_item(TableName="t", Key={})
    assert bad.value.response["Error"] == {"Code": "ValidationException", "Message": "bad"}
    assert len(scripted.requests) == 1


def test_attempts_are_bounded(scripted: Scripted) -> None:
    scripted.script = [answer(500, {"__type": "InternalServerError"})]
    with pytest.raises(ClientError) as failed:
        client(awsjson.DYNAMODB, endpoint=scripted.url, max_attempts=3).get_item(TableName="t", Key={})
    assert failed.value.response["ResponseMetadata"]["RetryAttempts"] == 2
    assert len(scripted.requests) == 3


def test_a_corrupted_answer_is_asked_again(scripted: Scripted) -> None:
    """DynamoDB's x-amz-crc32 over the body: a mismatch is a transient error, as in botocore."""
    good = answer(200, {"Count": 0, "Items": []})

    def corrupted(handler: http.server.BaseHTTPRequestHandler) -> None:
        answer(200, {"Count": 0, "Items": []}, {"x-amz-crc32": "1"}, crc=False)(handler)

    scripted.script = [corrupted, good]
    assert client(awsjson.DYNAMODB, endpoint=scripted.url).query(TableName="t")["Count"] == 0
    assert len(scripted.requests) == 2


def test_silence_is_a_read_timeout_and_an_unavailable_dependency(scripted: Scripted) -> None:
    scripted.script = [silence(2.0)]
    slow = client(awsjson.DYNAMODB, endpoint=scripted.url, read_timeout=0.3, max_attempts=2)
    started = time.monotonic()
    with pytest.raises(DependencyUnavailable), unavailable_on_transport_errors("DynamoDB"):
        slow.get_item(TableName="t", Key={})
    assert time.monotonic() - started < 1.5
    assert len(scripted.requests) == 2


def test_nothing_listening_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSCRIPTED")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "scripted")
    with Scripted() as gone:
        url = gone.url
    with pytest.raises(awsjson.EndpointUnreachable):
        client(awsjson.SQS, endpoint=url, max_attempts=1).send_message(QueueUrl="q", MessageBody="x")


def test_a_connection_the_server_closed_is_not_reused(scripted: Scripted) -> None:
    """The server answers and hangs up: the next call opens a new connection, no error."""

    def answer_and_hang_up(handler: http.server.BaseHTTPRequestHandler) -> None:
        answer(200, {})(handler)
        handler.close_connection = True

    scripted.script = [answer_and_hang_up, answer(200, {}), answer(200, {})]
    sqs = client(awsjson.SQS, endpoint=scripted.url, max_attempts=1)
    for _ in range(3):
        sqs.send_message(QueueUrl="q", MessageBody="x")
        time.sleep(0.05)
    assert len(scripted.requests) == 3
    assert len(scripted.connections) == 2  # the hung-up one, then one kept for the other two


def test_waits_follow_botocore_transient_short_throttled_long_hinted_longer(
    scripted: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With random() at its top: a 5xx waits DynamoDB's 25 ms, a throttle (or a bare 429) 1 s,
    then twice that; an x-amz-retry-after of 300 ms stretches a 25 ms wait to 300."""
    monkeypatch.setattr("evreserve.awsjson.client.random.random", lambda: 1.0)
    waits: list[float] = []
    scripted.script = [
        answer(503, {"__type": "ServiceUnavailable"}),
        answer(400, {"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException"}),
        answer(429, {}),
        answer(500, {"__type": "InternalServerError"}, {"x-amz-retry-after": "300"}),
        answer(200, {}),
    ]
    ddb = awsjson.JsonClient(
        awsjson.DYNAMODB, region="us-east-1", endpoint=scripted.url, max_attempts=5, sleep=waits.append
    )
    ddb.get_item(TableName="t", Key={})
    assert waits == pytest.approx([0.025, 2.0, 4.0, 0.3])


def test_a_server_failure_past_the_retries_is_an_unavailable_dependency(scripted: Scripted) -> None:
    """A 502 page from a proxy (not JSON) keeps botocore's code, the status, and is a 503 to our caller."""

    def html(handler: http.server.BaseHTTPRequestHandler) -> None:
        data = b"<html>Bad Gateway</html>"
        handler.send_response(502)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    scripted.script = [html]
    ddb = client(awsjson.DYNAMODB, endpoint=scripted.url, max_attempts=2)
    with pytest.raises(ClientError) as failed:
        ddb.get_item(TableName="t", Key={})
    assert failed.value.response["Error"]["Code"] == "502"
    with pytest.raises(DependencyUnavailable), unavailable_on_transport_errors("DynamoDB"):
        ddb.get_item(TableName="t", Key={})


def test_error_codes_as_botocore_reads_them(scripted: Scripted) -> None:
    """``__type`` past a '#' and before a ':'; SQS's Query code only from a well-formed header."""
    scripted.script = [answer(400, {"__type": "aws.protocoltests#Bad:http://internal.amazon.com/"})]
    with pytest.raises(ClientError) as colon:
        client(awsjson.DYNAMODB, endpoint=scripted.url).get_item(TableName="t", Key={})
    assert colon.value.response["Error"]["Code"] == "Bad"
    scripted.script = [
        answer(400, {"__type": "com.amazonaws.sqs#QueueDoesNotExist"}, {"x-amzn-query-error": ";Sender"})
    ]
    with pytest.raises(ClientError) as malformed:
        client(awsjson.SQS, endpoint=scripted.url).get_queue_url(QueueName="q")
    assert malformed.value.response["Error"]["Code"] == "QueueDoesNotExist"


def test_sqs_requests_opt_in_to_query_error_codes(scripted: Scripted) -> None:
    """As botocore: ``x-amzn-query-mode: true``, signed, on every SQS request (not DynamoDB's)."""
    scripted.script = [answer(200, {})]
    client(awsjson.SQS, endpoint=scripted.url).send_message(QueueUrl="q", MessageBody="x")
    client(awsjson.DYNAMODB, endpoint=scripted.url).get_item(TableName="t", Key={})
    sqs_request, dynamodb_request = scripted.requests
    assert sqs_request["x-amzn-query-mode"] == "true"
    assert "x-amzn-query-mode" in sqs_request["Authorization"].split("SignedHeaders=")[1].split(",")[0]
    assert "x-amzn-query-mode" not in dynamodb_request


def test_with_tracing_each_call_is_an_aws_subsegment(scripted: Scripted, monkeypatch: pytest.MonkeyPatch) -> None:
    """As X-Ray's botocore patch recorded botocore's calls: a subsegment named after the service in
    the ``aws`` namespace, with the operation, the table, the request id and the status; an error
    answer is flagged and carries its exception (evreserve_lambda.tracing.record_aws_calls)."""
    from aws_xray_sdk import global_sdk_config
    from aws_xray_sdk.core.recorder import AWSXRayRecorder

    from evreserve_lambda.tracing import record_aws_calls

    # A disabled Tracer (the functions loaded in this process, tracing off) turns the SDK off
    # for the whole process: on here, as in a function with tracing on, and back after.
    monkeypatch.delenv("AWS_XRAY_SDK_ENABLED", raising=False)
    was_enabled = global_sdk_config.sdk_enabled()
    global_sdk_config.set_sdk_enabled(True)

    sent: list[Any] = []

    class Captured:
        def send_entity(self, entity: Any) -> None:
            sent.append(entity)

    recorder = AWSXRayRecorder()
    recorder.configure(sampling=False, context_missing="LOG_ERROR", emitter=Captured())
    monkeypatch.setattr("aws_xray_sdk.core.xray_recorder", recorder)
    scripted.script = [
        answer(200, {"Item": {"pk": {"S": "a"}}}),
        answer(400, {"__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException", "message": "no"}),
    ]
    ddb = client(awsjson.DYNAMODB, endpoint=scripted.url)
    awsjson.observe(record_aws_calls)
    try:
        segment = recorder.begin_segment("invocation")
        assert ddb.get_item(TableName="registry", Key={})["Item"] == {"pk": {"S": "a"}}
        with pytest.raises(ClientError):
            ddb.put_item(TableName="registry", Item={})
        recorder.end_segment()
    finally:
        awsjson.observe(None)
        global_sdk_config.set_sdk_enabled(was_enabled)
    ok, failed = segment.subsegments
    assert [(s.name, s.namespace, s.aws["operation"], s.aws["table_name"]) for s in (ok, failed)] == [
        ("DynamoDB", "aws", "GetItem", "registry"),
        ("DynamoDB", "aws", "PutItem", "registry"),
    ]
    assert ok.aws["request_id"] == "req-1" and ok.http["response"]["status"] == 200
    assert not (getattr(ok, "error", False) or getattr(ok, "fault", False))
    assert failed.http["response"]["status"] == 400 and getattr(failed, "error", False)
    (thrown,) = failed.cause["exceptions"]
    assert thrown.type == "ClientError" and thrown.remote and "ConditionalCheckFailedException" in thrown.message
    assert sent == [segment]
    with pytest.raises(ClientError):  # the script's last answer again, now seen by no observer
        ddb.get_item(TableName="registry", Key={})
    assert len(segment.subsegments) == 2
