"""The local SQS drops messages past their queue's retention, as SQS does (moto only hides them)."""

from __future__ import annotations

import time

import boto3
import pytest
from fixtures.moto_env import mocked_aws

from devstack.sqs import drop_expired_messages


def test_messages_past_retention_are_gone_in_flight_or_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN a 60 s queue holding one received (in flight) and one waiting message, and a 300 s
    queue holding one, WHEN the sweep runs 61 s later THEN the 60 s queue is empty and the
    other keeps its message; a sweep at the send instant dropped nothing."""
    with mocked_aws(monkeypatch):
        sqs = boto3.client("sqs")
        short = sqs.create_queue(QueueName="short", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
        long = sqs.create_queue(QueueName="long", Attributes={"MessageRetentionPeriod": "300"})["QueueUrl"]
        sent_ms = time.time() * 1000
        for body in ("received", "waiting"):
            sqs.send_message(QueueUrl=short, MessageBody=body)
        sqs.send_message(QueueUrl=long, MessageBody="kept")
        sqs.receive_message(QueueUrl=short, MaxNumberOfMessages=1, VisibilityTimeout=120)

        def counts(url: str) -> tuple[str, str]:
            attributes = sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            return attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"]

        assert drop_expired_messages(now_ms=sent_ms) == 0
        assert counts(short) == ("1", "1")
        assert drop_expired_messages(now_ms=sent_ms + 61_000) == 2
        assert (counts(short), counts(long)) == (("0", "0"), ("1", "0"))


def test_the_cheap_clock_gives_moto_the_same_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """With moto's clock and retention check replaced (devstack.sqs._cheap_clock), a hidden message
    shows again after its visibility timeout, and one past retention is not received."""
    from moto.sqs import models

    from devstack.sqs import _cheap_clock

    for name in ("unix_time", "unix_time_millis"):
        monkeypatch.setattr(models, name, getattr(models, name))
    monkeypatch.setattr(
        models.SQSBackend,
        "is_message_valid_based_on_retention_period",
        models.SQSBackend.is_message_valid_based_on_retention_period,
    )
    _cheap_clock()
    with mocked_aws(monkeypatch):
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="q", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="shown again")
        (first,) = sqs.receive_message(QueueUrl=url, VisibilityTimeout=1)["Messages"]
        assert "Messages" not in sqs.receive_message(QueueUrl=url)
        time.sleep(1.1)
        (again,) = sqs.receive_message(QueueUrl=url, VisibilityTimeout=1)["Messages"]
        assert again["MessageId"] == first["MessageId"]
        sqs.send_message(QueueUrl=url, MessageBody="too old")
        (queue,) = [q for r in models.sqs_backends.values() for b in r.values() for q in b.queues.values()]
        for message in queue._messages:
            message.sent_timestamp -= 61_000
        time.sleep(1.1)
        assert "Messages" not in sqs.receive_message(QueueUrl=url)
