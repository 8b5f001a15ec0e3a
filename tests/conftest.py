"""Fixtures shared by every test layer.

The local AWS stack starts once per session, and only if a test asks for it, so the
unit tests run without Java. Its server logs stay under ``.cache/test-logs/`` and their
paths are printed at the end of a session in which a test failed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from devstack import REPO_ROOT, client_config
from devstack.localaws import LocalAws

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

pytest_plugins = ["fixtures.gateway_fixtures", "fixtures.api_fixtures"]

TEST_LOGS = REPO_ROOT / ".cache" / "test-logs"
_SERVER_LOGS = pytest.StashKey[list[Path]]()


# --- the local AWS stack ----------------------------------------------------------------


@pytest.fixture(scope="session")
def local_aws(request: pytest.FixtureRequest) -> Iterator[LocalAws]:
    """DynamoDB Local + SQS with the template's resources; its env() is in os.environ."""
    run = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    log_dir = TEST_LOGS / run
    request.config.stash[_SERVER_LOGS] = [log_dir / "dynamodb.log", log_dir / "sqs.log"]
    # A prefix per session keeps parallel sessions apart in names and log files alike.
    with LocalAws(prefix=f"t{os.getpid()}", log_dir=log_dir) as aws, pytest.MonkeyPatch.context() as mp:
        for name, value in aws.env().items():
            mp.setenv(name, value)
        yield aws


@pytest.fixture
def dynamodb_client(local_aws: LocalAws) -> DynamoDBClient:
    """A boto3 DynamoDB client on the local server; one attempt, 1 s connect / 5 s read."""
    return local_aws.dynamodb.client(client_config())


@pytest.fixture
def sqs_client(local_aws: LocalAws) -> SQSClient:
    """A boto3 SQS client on the local server; long polls must wait under 5 s."""
    return local_aws.sqs.client(client_config())


# --- reporting ------------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    logs = config.stash.get(_SERVER_LOGS, None)
    failed = terminalreporter.stats.get("failed") or terminalreporter.stats.get("error")
    if logs and failed:
        terminalreporter.section("local AWS server logs")
        for path in logs:
            terminalreporter.write_line(str(path))
