"""The home of this instance's SQS queue: its SQS calls, the long poll, the drain at shutdown.

Each instance reads a queue of its own (``{prefix}{instance id}``), created at start,
long-polled while it runs, drained and deleted when it stops. SQS losing it (a restarted
server, a deletion by hand) is repaired here: the poll creates it again, and the
connection table re-registers its chargers when the URL changed.

Handled messages are never deleted: the queue keeps a message ``RETENTION_S`` (60 s,
SQS's least) and hides a received one for ``HIDDEN_S``, longer, so SQS drops it before
it could show it again. A command costs Send + Receive and nothing more. What needs
a message back asks for it (``Redeliveries``: ChangeMessageVisibility, one request on
that path only): an outcome that could not be stored is retried on the redelivery, and
an unreadable message comes back until SQS moves it to the DLQ after
``GATEWAY_QUEUE_MAX_RECEIVE_COUNT`` receives (docs/decisions.md, "Handled messages
expire").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evreserve.aws import ClientError, adopt, error_code, queue_is_gone, unavailable_on_transport_errors
from evreserve.channel import CloseSession, close_session

from ..offload import Offload
from ..settings import GatewaySettings

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

#: The logger names these records had before the queue got a module of its own.
log = logging.getLogger("evreserve_gateway")
redeliveries_log = logging.getLogger("evreserve_gateway.commands")

#: Sent by the instance to itself at shutdown, so that its pending long poll returns at once.
WAKE_UP_BODY = '{"gateway":"wake-up"}'

#: How long SQS keeps a message (its least): longer than any command lives
#: (``ChannelSettings``: at most a 25 s deadline plus 4 s of grace).
RETENTION_S = 60
#: The queue's visibility timeout: a received message stays hidden until it expires.
HIDDEN_S = 2 * RETENTION_S
#: Longest pause between attempts to reach a failing SQS.
MAX_POLL_BACKOFF_S = 5.0


@dataclass(frozen=True, slots=True)
class Received:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int


class InstanceQueue:
    """Blocking SQS calls for one queue; the gateway runs them on its I/O threads."""

    def __init__(self, sqs: SQSClient, name: str) -> None:
        self._sqs = adopt(sqs)
        self.name = name
        self.url = ""

    def create(self, *, wait_s: int, dlq_url: str | None, max_receive_count: int) -> str:
        attributes: dict[Any, str] = {
            "VisibilityTimeout": str(HIDDEN_S),
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

    def show_again(self, receipt_handle: str, after_s: int) -> None:
        """Make a received message visible again ``after_s`` from now (it counts as one more receive)."""
        with unavailable_on_transport_errors("SQS"):
            self._sqs.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=receipt_handle, VisibilityTimeout=after_s
            )

    def wake_up(self) -> None:
        with unavailable_on_transport_errors("SQS"):
            self._sqs.send_message(QueueUrl=self.url, MessageBody=WAKE_UP_BODY)

    def send_close(self, url: str, request: CloseSession) -> None:
        """Ask another instance (its queue ``url``) to close a session it holds."""
        close_session(self._sqs, url, request)

    def delete_queue(self, url: str | None = None) -> None:
        """Delete this queue, or (``url``) a dead instance's: gone already is fine."""
        try:
            with unavailable_on_transport_errors("SQS"):
                self._sqs.delete_queue(QueueUrl=url or self.url)
        except ClientError as exc:
            if url is None or not queue_is_gone(exc):
                raise


class Redeliveries:
    """Messages asked back from SQS: each a ChangeMessageVisibility, sent off the event loop."""

    def __init__(self, queue: InstanceQueue, io: Offload) -> None:
        self._queue = queue
        self._io = io
        self._tasks: set[asyncio.Task[None]] = set()

    def later(self, receipt_handle: str, after_s: int) -> None:
        """Have SQS show the message again in ``after_s`` (0: now) instead of letting it expire."""
        task = asyncio.get_running_loop().create_task(self._show_again(receipt_handle, after_s))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def pending(self) -> set[asyncio.Task[None]]:
        return set(self._tasks)

    async def _show_again(self, receipt_handle: str, after_s: int) -> None:
        try:
            await self._io(self._queue.show_again, receipt_handle, after_s)
        except Exception:
            # Expired already, or SQS unreachable: the message is gone with its retry.
            redeliveries_log.exception("could not ask for a message's redelivery; it expires instead")


class CommandQueue:
    """This instance's queue as the gateway runs it: created, long-polled, drained and deleted.

    ``queue`` makes the short calls; ``poll_queue`` is the same queue on a client whose
    read timeout allows for the long poll (see ``bootstrap``).
    """

    def __init__(
        self,
        settings: GatewaySettings,
        queue: InstanceQueue,
        poll_queue: InstanceQueue,
        io: Offload,
        stopping: asyncio.Event,
    ) -> None:
        self._settings = settings
        self._queue = queue
        self._poll_queue = poll_queue
        self._io = io
        self._stopping = stopping
        self.redeliveries = Redeliveries(queue, io)

    @property
    def url(self) -> str:
        return self._queue.url

    async def create(self) -> bool:
        """Create (or find) this instance's queue; True if its URL changed, so registrations must follow."""
        before = self._queue.url
        self._poll_queue.url = await self._io(
            self._queue.create,
            wait_s=self._settings.gateway_queue_wait_s,
            dlq_url=self._settings.command_dlq_url,
            max_receive_count=self._settings.gateway_queue_max_receive_count,
        )
        return bool(before) and before != self._queue.url

    async def poll(self, deliver: Callable[[Received], None], moved: Callable[[], Awaitable[None]]) -> None:
        """Hand every command received to ``deliver`` until the gateway stops; ``moved`` when the URL changed."""
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                messages = await self._io(self._poll_queue.receive, self._settings.gateway_queue_wait_s)
            except ClientError as exc:
                if not queue_is_gone(exc):
                    log.exception("could not receive commands; retrying", extra={"backoffS": backoff})
                    await asyncio.sleep(backoff)
                    continue
                # SQS lost the queue (a restarted server, a deletion by hand): without it
                # no command can reach this instance again, so it is created anew.
                log.warning("the instance queue is gone; creating it again", extra={"queueUrl": self.url})
                try:
                    if await self.create():
                        await moved()
                except Exception:
                    log.exception("could not create the instance queue; retrying", extra={"backoffS": backoff})
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), backoff)
                    backoff = min(backoff * 2, MAX_POLL_BACKOFF_S)
                continue
            except Exception:
                log.exception("could not receive commands; retrying", extra={"backoffS": backoff})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, MAX_POLL_BACKOFF_S)
                continue
            backoff = 0.5
            self._hand_over(messages, deliver)

    async def wake_poll(self) -> None:
        """Make the pending long poll return now (a message to ourselves), so that a stop need not wait it out."""
        try:
            await self._io(self._queue.wake_up)
        except Exception:
            log.exception("could not wake the long poll; waiting it out")

    async def drain(self, deliver: Callable[[Received], None]) -> None:
        """Hand over the commands still queued at shutdown (no charger is held: they end offline)."""
        while True:
            try:
                messages = await self._io(self._queue.receive, 0)
            except Exception:
                log.exception("could not drain the instance queue")
                return
            if not messages:
                return
            self._hand_over(messages, deliver)

    async def remove(self) -> None:
        """Delete the queue itself: nobody reads it any more."""
        try:
            await self._io(self._queue.delete_queue)
        except Exception:
            log.exception("could not delete the instance queue", extra={"queueUrl": self.url})

    def _hand_over(self, messages: list[Received], deliver: Callable[[Received], None]) -> None:
        for message in messages:
            if message.body != WAKE_UP_BODY:
                deliver(message)
