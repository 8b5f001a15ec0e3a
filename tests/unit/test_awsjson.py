"""evreserve.awsjson's pure parts: the signature (against botocore's own signer), the
operation names, the retry quota, and the DynamoDB codec it needs instead of boto3's."""

from __future__ import annotations

import datetime as dt
import fcntl
import resource
import socket
from decimal import Decimal
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from evreserve.awsjson import RetryQuota, Signer, operation_name
from evreserve.awsjson.client import _dropped
from evreserve.storage.codec import deserialize, from_item, serialize, to_item

NOW = dt.datetime(2026, 12, 7, 12, 30, 5, tzinfo=dt.UTC)
BODY = b'{"TableName":"evreserve-commands","Key":{"pk":{"S":"cmd#1"}},"ConsistentRead":true}'


def botocore_authorization(host: str, headers: dict[str, str], credentials: BotoCredentials) -> str:
    request = AWSRequest(method="POST", url=f"https://{host}/", data=BODY, headers=dict(headers))
    # botocore reads the clock inside add_auth: give it the same instant.
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        SigV4Auth(credentials, "dynamodb", "eu-west-1").add_auth(request)
    return str(request.headers["Authorization"])


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEJr//////////session"])
@pytest.mark.parametrize("host", ["dynamodb.eu-west-1.amazonaws.com", "127.0.0.1:8000"])
def test_the_signature_is_botocores(token: str | None, host: str) -> None:
    """Same request, same key, same instant: the Authorization header botocore would send."""
    signer = Signer("eu-west-1", "dynamodb", host)
    ours = signer.headers(
        BODY, "application/x-amz-json-1.0", "DynamoDB_20120810.GetItem", ("AKIDEXAMPLE", "s3cr3t", token), NOW
    )
    unsigned = {k: v for k, v in ours.items() if k not in ("Authorization", "X-Amz-Security-Token")}
    theirs = botocore_authorization(host, unsigned, BotoCredentials("AKIDEXAMPLE", "s3cr3t", token))
    assert ours["Authorization"] == theirs
    assert ours.get("X-Amz-Security-Token") == token


def test_the_signing_key_follows_the_day_and_the_secret() -> None:
    """The derived key is cached; a new day or a rotated secret must not reuse it."""
    signer = Signer("us-east-1", "sqs", "sqs.us-east-1.amazonaws.com")

    def signature(secret: str, now: dt.datetime) -> str:
        headers = signer.headers(
            b"{}", "application/x-amz-json-1.0", "AmazonSQS.SendMessage", ("AK", secret, None), now
        )
        return headers["Authorization"].rsplit("Signature=", 1)[1]

    first = signature("one", NOW)
    assert signature("one", NOW) == first
    assert signature("two", NOW) != first
    assert signature("one", NOW + dt.timedelta(days=1)) != signature("one", NOW)
    assert signature("one", NOW) == first


@pytest.mark.parametrize(
    ("method", "operation"),
    [
        ("get_item", "GetItem"),
        ("transact_write_items", "TransactWriteItems"),
        ("get_queue_url", "GetQueueUrl"),
        ("send_message_batch", "SendMessageBatch"),
        ("put_events", "PutEvents"),
    ],
)
def test_method_names_are_the_operations(method: str, operation: str) -> None:
    assert operation_name(method) == operation


def test_the_retry_quota_runs_dry_and_refills() -> None:
    """As botocore's standard mode: 500 tokens, 14 a retry, 5 a retry after throttling."""
    quota = RetryQuota()
    taken = [quota.acquire(throttling=False) for _ in range(35)]
    assert taken == [14] * 35
    assert quota.acquire(throttling=False) == 0  # 10 left: not enough for a retry...
    assert [quota.acquire(throttling=True) for _ in range(3)] == [5, 5, 0]  # ...but for two after throttling
    quota.release(14)
    assert quota.acquire(throttling=False) == 14
    assert quota.acquire(throttling=True) == 0


def test_an_idle_kept_connection_past_descriptor_1023_is_not_taken_for_dropped() -> None:
    """The gateway holds thousands of sockets: select() would refuse the descriptor and every
    kept connection would look closed (a new TCP and TLS handshake per call)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2100:
        pytest.skip(f"the open-file hard limit ({hard}) does not reach descriptor 2000")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2100), hard))
    ours, theirs = socket.socketpair()
    try:
        high = socket.socket(fileno=fcntl.fcntl(ours.fileno(), fcntl.F_DUPFD, 2000))
        try:
            assert high.fileno() >= 2000
            assert _dropped(high) is False
            theirs.close()
            assert _dropped(high) is True  # the other end hung up
        finally:
            high.close()
    finally:
        ours.close()
        theirs.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_codec_round_trips_every_type() -> None:
    value = {
        "s": "text",
        "i": 42,
        "f": 22.5,
        "d": Decimal("1.10"),
        "t": True,
        "n": None,
        "b": b"\x00\xff",
        "l": [1, "two", None, {"x": 3}],
        "m": {"kept": 1, "dropped": None},
        "ss": {"a", "b"},
        "ns": {1, 2.5},
        "bs": {b"x"},
    }
    item = to_item(value)
    assert "n" not in item
    assert item["f"] == {"N": "22.5"}
    assert item["d"] == {"N": "1.10"}
    assert item["b"] == {"B": b"\x00\xff"}
    assert item["m"] == {"M": {"kept": {"N": "1"}}}
    assert item["l"]["L"][2] == {"NULL": True}
    back = from_item(item)
    assert back == {**{k: v for k, v in value.items() if k != "n"}, "d": 1.1, "m": {"kept": 1}}
    assert isinstance(back["i"], int) and isinstance(back["f"], float)
    assert deserialize({"N": "5.0"}) == 5 and isinstance(deserialize({"N": "5.0"}), int)
    assert deserialize({"N": "1e3"}) == 1000


@pytest.mark.parametrize("bad", [float("nan"), 10**40, set(), {1, "a"}, dt.datetime(2026, 1, 1)])
def test_codec_refuses_what_dynamodb_cannot_hold(bad: object) -> None:
    """Numbers past 38 digits or DynamoDB's exponent range, NaN, empty or mixed sets, others."""
    with pytest.raises((TypeError, ArithmeticError)):
        serialize(bad)
