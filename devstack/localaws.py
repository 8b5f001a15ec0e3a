"""Both local servers, the template's resources, and the environment pointing at them."""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from devstack import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, LocalServer
from devstack.dynamodb import DynamoDBLocal
from devstack.eventbridge import EventBridgeLocal
from devstack.sqs import SqsLocal
from devstack.template import Template, create_queues, create_resources, create_tables, load_template

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient


class LocalAws:
    """DynamoDB Local and the SQS server with the resources of ``template.yaml``.

    Used as ``with LocalAws(prefix="dev") as aws: os.environ.update(aws.env())``.
    Both servers keep everything in memory: a stopped and restarted server comes back
    on the same port with the template's tables / queues recreated empty, and anything
    created at run time (the gateways' own queues, items) gone. :meth:`pause_dynamodb`
    and :meth:`pause_sqs` freeze a server instead, which keeps its data.
    """

    def __init__(
        self,
        prefix: str = "local",
        log_dir: Path | None = None,
        template_path: Path | None = None,
        dynamodb_port: int = 0,
        sqs_port: int = 0,
    ) -> None:
        self.prefix = prefix
        self.template: Template = load_template(template_path)
        self.dynamodb = DynamoDBLocal(dynamodb_port, log_path=log_dir / "dynamodb.log" if log_dir else None)
        self.sqs = SqsLocal(sqs_port, log_path=log_dir / "sqs.log" if log_dir else None)
        #: EventBridge, and the queues partners' rules deliver to (its own SQS).
        self.eventbridge = EventBridgeLocal(0, log_path=log_dir / "eventbridge.log" if log_dir else None)
        #: env var name -> physical table name / queue URL.
        self.resources: dict[str, str] = {}

    @property
    def log_paths(self) -> list[Path]:
        return [self.dynamodb.log_path, self.sqs.log_path, self.eventbridge.log_path]

    def start(self) -> Self:
        # The JVM takes a second or more; moto's start overlaps it instead of following it.
        _start_together([self.dynamodb, self.sqs, self.eventbridge])
        try:
            self.resources = create_resources(
                self.dynamodb.client(),
                self.sqs.client(),
                self.prefix,
                template=self.template,
                events_client=self.eventbridge.client(),
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.eventbridge.stop()
        self.sqs.stop()
        self.dynamodb.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """What a Lambda, the gateway or a test needs in ``os.environ`` to use this stack."""
        return {
            # boto3 reads these per-service endpoints itself.
            "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb.endpoint,
            "AWS_ENDPOINT_URL_SQS": self.sqs.endpoint,
            "AWS_ENDPOINT_URL_EVENTBRIDGE": self.eventbridge.endpoint,
            # DynamoDB Local serves its tables' streams at its own endpoint.
            "AWS_ENDPOINT_URL_DYNAMODB_STREAMS": self.dynamodb.endpoint,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            # Without keys botocore would probe the EC2 metadata service, a multi-second
            # hang off EC2; with them this only guards a misconfigured shell.
            "AWS_EC2_METADATA_DISABLED": "true",
            "GATEWAY_QUEUE_PREFIX": f"{self.prefix}-gw-",
            **self.resources,
        }

    def dynamodb_client(self) -> DynamoDBClient:
        return self.dynamodb.client()

    def sqs_client(self) -> SQSClient:
        return self.sqs.client()

    # Fault injection --------------------------------------------------------------

    def stop_dynamodb(self) -> None:
        self.dynamodb.stop()

    def start_dynamodb(self) -> None:
        """Bring DynamoDB Local back on its port, with the template's tables (empty)."""
        self.dynamodb.start()
        self.resources |= create_tables(self.dynamodb.client(), self.prefix, self.template)

    def stop_sqs(self) -> None:
        self.sqs.stop()

    def start_sqs(self) -> None:
        """Bring the SQS server back on its port, with the template's queues (empty)."""
        self.sqs.start()
        self.resources |= create_queues(self.sqs.client(), self.prefix, self.template)

    def pause_dynamodb(self) -> None:
        self.dynamodb.pause()

    def resume_dynamodb(self) -> None:
        self.dynamodb.resume()

    def pause_sqs(self) -> None:
        self.sqs.pause()

    def resume_sqs(self) -> None:
        self.sqs.resume()


def _start_together(servers: list[LocalServer]) -> None:
    errors: list[BaseException] = []

    def start(server: LocalServer) -> None:
        try:
            server.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,), name=f"start-{s.name}") for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        for server in servers:
            server.stop()
        raise errors[0]
