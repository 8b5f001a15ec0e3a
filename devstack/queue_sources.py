"""Lambda's SQS event source, locally: a queue's messages handed to a function in batches.

What ``template.yaml`` declares on a function as ``Type: SQS`` runs here as Lambda's poller
would: long polls of at most ``BatchSize`` messages, each handed on as an SQS event record;
the messages the function answers as done are deleted, the ones it names in
``batchItemFailures`` (or every one, if it fails) stay and come back after the queue's
visibility timeout, and the queue's own RedrivePolicy moves a message that keeps coming
back to its dead-letter queue (the SQS stand-in implements it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3

from devstack import client_config

log = logging.getLogger("devstack.queue_sources")

WAIT_S = 1


@dataclass(frozen=True)
class QueueSource:
    """One ``Type: SQS`` event of a function, as template.yaml declares it."""

    function_id: str
    queue_id: str
    batch_size: int = 10


def queue_source(
    function_id: str, props: dict[str, Any], as_getatt: Callable[[Any], tuple[str, str] | None]
) -> QueueSource | None:
    """The source of a ``Type: SQS`` event's properties; None when its queue is no template queue."""
    queue = as_getatt(props.get("Queue"))
    if queue is None or queue[1] != "Arn":
        return None
    return QueueSource(function_id, queue[0], min(10, int(props.get("BatchSize", 10))))


class QueuePoller:
    """Receives from one queue and invokes ``invoke(event) -> result`` with the messages, on a thread."""

    def __init__(self, source: QueueSource, queue_url: str, invoke: Callable[[dict[str, Any]], Any]) -> None:
        self.source = source
        self.queue_url = queue_url
        self._invoke = invoke
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sqs: Any = boto3.client("sqs", config=client_config())
        #: Messages handed to the function and deleted (tests read it).
        self.delivered = 0

    def start(self) -> QueuePoller:
        self._thread = threading.Thread(target=self._run, name=f"queue-{self.source.function_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _arn(self) -> str:
        attributes = self._sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
        return str(attributes["Attributes"]["QueueArn"])

    def _run(self) -> None:
        arn = ""
        while not self._stop.is_set():
            try:
                arn = arn or self._arn()
                answer = self._sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=self.source.batch_size,
                    WaitTimeSeconds=WAIT_S,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
                messages = answer.get("Messages", [])
                if messages:
                    self._hand_on(messages, arn)
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("polling %s for %s failed", self.queue_url, self.source.function_id)
                self._stop.wait(1.0)

    def _hand_on(self, messages: list[dict[str, Any]], arn: str) -> None:
        region = self._sqs.meta.region_name
        records = [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": region,
            }
            for m in messages
        ]
        try:
            result = self._invoke({"Records": records})
        except Exception:
            # The whole batch comes back after the visibility timeout, as on Lambda.
            log.exception("%s failed a batch of %d messages", self.source.function_id, len(records))
            return
        failed = {str(f.get("itemIdentifier")) for f in (result or {}).get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            entries = [
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(done[start : start + 10])
            ]
            self._sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        self.delivered += len(done)
