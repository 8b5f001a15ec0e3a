"""This instance's own SQS queue: created at start, long-polled, deleted at shutdown."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from evreserve.aws import error_code, unavailable_on_transport_errors

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

#: Sent by the instance to itself at shutdown, so that its pending long poll returns at once.
WAKE_UP_BODY = '{"gateway":"wake-up"}'

#: Commands live seconds; anything older than this in the queue is long past its deadline.
RETENTION_S = 300


def queue_is_gone(exc: ClientError) -> bool:
    """SQS's answer for a queue that does not exist (query and JSON protocols spell it differently)."""
    code = error_code(exc)
    return "NonExistentQueue" in code or "QueueDoesNotExist" in code


@dataclass(frozen=True, slots=True)
class Received:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int


class InstanceQueue:
    """Blocking SQS calls for one queue; the gateway runs them on its I/O threads."""

    def __init__(self, sqs: SQSClient, name: str) -> None:
        self._sqs = sqs
        self.name = name
        self.url = ""

    def create(self, *, visibility_s: int, wait_s: int, dlq_url: str | None, max_receive_count: int) -> str:
        attributes: dict[Any, str] = {
            "VisibilityTimeout": str(visibility_s),
            "MessageRetentionPeriod": str(RETENTION_S),
            "ReceiveMessageWaitTimeSeconds": str(wait_s),
        }
        with unavailable_on_transport_errors("SQS"):
            if dlq_url:
                arn = self._sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
                    "QueueArn"
                ]
                attributes["RedrivePolicy"] = json.dumps(
                    {"deadLetterTargetArn": arn, "maxReceiveCount": str(max_receive_count)}
                )
            try:
                self.url = self._sqs.create_queue(QueueName=self.name, Attributes=attributes)["QueueUrl"]
            except ClientError as exc:
                # A restarted instance with the same id finds its old queue, maybe set up differently.
                if "QueueAlreadyExists" not in error_code(exc) and "QueueNameExists" not in error_code(exc):
                    raise
                self.url = self._sqs.get_queue_url(QueueName=self.name)["QueueUrl"]
                self._sqs.set_queue_attributes(QueueUrl=self.url, Attributes=attributes)
        return self.url

    def receive(self, wait_s: int) -> list[Received]:
        with unavailable_on_transport_errors("SQS"):
            answer: dict[str, Any] = dict(
                self._sqs.receive_message(
                    QueueUrl=self.url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=wait_s,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                )
            )
        return [
            Received(
                message_id=m["MessageId"],
                receipt_handle=m["ReceiptHandle"],
                body=m["Body"],
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
            )
            for m in answer.get("Messages", [])
        ]

    def delete(self, receipt_handles: list[str]) -> list[str]:
        """Delete up to 10 messages; returns the handles that failed."""
        entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(receipt_handles)]
        with unavailable_on_transport_errors("SQS"):
            answer = self._sqs.delete_message_batch(QueueUrl=self.url, Entries=entries)  # type: ignore[arg-type]
        return [receipt_handles[int(f["Id"])] for f in answer.get("Failed", [])]

    def wake_up(self) -> None:
        with unavailable_on_transport_errors("SQS"):
            self._sqs.send_message(QueueUrl=self.url, MessageBody=WAKE_UP_BODY)

    def delete_queue(self) -> None:
        with unavailable_on_transport_errors("SQS"):
            self._sqs.delete_queue(QueueUrl=self.url)
