"""Building the AWS clients: under ``AWS_CLIENT=botocore`` every client of a process comes from one boto3 session."""

from __future__ import annotations

import threading
from typing import Any

import boto3
import pytest

from evreserve import aws
from evreserve.settings import AwsSettings


def test_botocore_clients_share_one_session_even_when_built_in_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A session per client would load botocore's data files again for each; two threads building at once
    must neither build two sessions nor use one concurrently."""
    monkeypatch.setattr(aws, "_session", None)
    made: list[Any] = []
    real = boto3.session.Session

    def counted(*args: Any, **kwargs: Any) -> Any:
        session = real(*args, **kwargs)
        made.append(session)
        return session

    monkeypatch.setattr(boto3.session, "Session", counted)
    settings = AwsSettings(aws_client="botocore")  # type: ignore[call-arg]
    built: list[Any] = []
    builders = [aws.dynamodb_client, aws.sqs_client, aws.events_client] * 2
    threads = [threading.Thread(target=lambda b=b: built.append(b(settings))) for b in builders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 6
    assert len(made) == 1
    assert {type(c.wrapped).__name__ for c in built} == {"DynamoDB", "SQS", "EventBridge"}


def test_an_explicit_session_builds_no_shared_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aws, "_session", None)
    given = boto3.session.Session(region_name="eu-west-1")
    aws.sqs_client(AwsSettings(aws_client="awsjson"), session=given)  # type: ignore[call-arg]
    assert aws._session is None
