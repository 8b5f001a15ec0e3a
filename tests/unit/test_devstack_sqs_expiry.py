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
