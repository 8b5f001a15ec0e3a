"""The home of outcomes that could not be stored: kept in a durable queue until DynamoDB takes them.

A charger's answer is a fact: once it is given, the record must say it, however long
DynamoDB is out. When the outcome write still fails after the runner's quick retries,
the outcome goes to the spool (an SQS queue shared by every instance, two weeks'
retention; ``OUTCOME_SPOOL_URL``) and the command's own message is deleted: the outcome
no longer depends on this process, its queue or its drain. Every instance drains the
spool: it writes each outcome through the ledger's exactly-once conditional write
(idempotent: a copy written twice is a no-op) and deletes the message only once it is
stored; a failed write leaves it for the next receive. Meanwhile the reservation reads
as Failed past its answer-by time (``evreserve.lifecycle``), until this write replaces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import ValidationError

from evreserve.aws import adopt, unavailable_on_transport_errors
from evreserve.models import Command, CommandOutcome, Model
from evreserve.storage.commands import CommandLedger

from ..offload import Offload
from .context import command_context

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger("evreserve_gateway.commands")

#: How long a received spooled outcome stays hidden from the other instances while one writes it.
SPOOL_VISIBILITY_S = 30
#: Pause between attempts to drain the spool while it is empty or storage fails.
SPOOL_PAUSE_S = 5.0


class SpooledOutcome(Model):
    """The spool's message body: the command and the outcome to store for it."""

    v: Literal[1] = 1
    command: Command
    outcome: CommandOutcome


@dataclass(frozen=True, slots=True)
class Spooled:
    receipt_handle: str
    body: SpooledOutcome | None


class OutcomeSpool:
    """The SQS side of the spool (blocking calls: run them on the Offload)."""

    def __init__(self, sqs: SQSClient, url: str) -> None:
        self._sqs = adopt(sqs)
        self.url = url

    def put(self, command: Command, outcome: CommandOutcome) -> None:
        body = SpooledOutcome(command=command, outcome=outcome).model_dump_json(exclude_none=True)
        with unavailable_on_transport_errors("SQS"):
            self._sqs.send_message(QueueUrl=self.url, MessageBody=body)

    def receive(self) -> list[Spooled]:
        with unavailable_on_transport_errors("SQS"):
            answer = self._sqs.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=10, VisibilityTimeout=SPOOL_VISIBILITY_S, WaitTimeSeconds=0
            )
        found = []
        for message in answer.get("Messages", []):
            try:
                body: SpooledOutcome | None = SpooledOutcome.model_validate_json(message["Body"])
            except ValidationError:
                body = None
            found.append(Spooled(message["ReceiptHandle"], body))
        return found

    def delete(self, receipt_handle: str) -> None:
        with unavailable_on_transport_errors("SQS"):
            self._sqs.delete_message(QueueUrl=self.url, ReceiptHandle=receipt_handle)


class SpoolWriter:
    """Drains the spool into the ledger until the gateway stops."""

    def __init__(self, spool: OutcomeSpool, ledger: CommandLedger, io: Offload, stopping: asyncio.Event) -> None:
        self._spool = spool
        self._ledger = ledger
        self._io = io
        self._stopping = stopping

    async def run(self, pause_s: float = SPOOL_PAUSE_S) -> None:
        while not self._stopping.is_set():
            try:
                written = await self.drain_once()
            except Exception:
                log.exception("could not drain the outcome spool; retrying")
                written = 0
            if written == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), pause_s)

    async def drain_once(self) -> int:
        """Store what one receive brings; the number stored (0: nothing there, or storage still failing)."""
        written = 0
        for spooled in await self._io(self._spool.receive):
            if spooled.body is None:
                log.error("unreadable message in the outcome spool; dropped")
                await self._io(self._spool.delete, spooled.receipt_handle)
                continue
            command, outcome = spooled.body.command, spooled.body.outcome
            extra = {**command_context(command), "outcome": outcome.kind.value}
            try:
                stored = await self._io(self._ledger.complete, command, outcome)
            except Exception:
                log.warning("a spooled outcome still cannot be stored; kept for later", extra=extra)
                return written
            await self._io(self._spool.delete, spooled.receipt_handle)
            written += 1
            log.info(
                "spooled outcome stored" if stored == outcome else "spooled outcome found another already stored",
                extra={**extra, "storedBy": stored.completed_by},
            )
        return written
