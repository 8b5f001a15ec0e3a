"""Executing the commands that arrive on this instance's queue (the gateway's side of ``evreserve.channel``).

Each command is sent to its charger at most once: deliveries are deduplicated by
command id in memory, which is enough because each queue has exactly one reader
(this process) and dies with it. The outcome is written with the ledger's
exactly-once conditional write; a message is deleted only once that write is done,
so a failed write is retried on the message's redelivery without re-sending.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from evreserve.channel import CommandEnvelope, CommandLedger
from evreserve.errors import InvalidRequest
from evreserve.models import Command, CommandOutcome, OutcomeKind, utcnow

from .instance_queue import WAKE_UP_BODY, InstanceQueue, Received
from .ocpp_session import CallErrorReply, OcppSession, SessionClosed
from .offload import Offload

log = logging.getLogger(__name__)

#: How long a command id is remembered; longer than SQS could redeliver it
#: (visibility timeout x max receive count, bounded by the queue's retention).
DEDUPE_TTL_S = 600.0
DEDUPE_MAX_ENTRIES = 100_000


@dataclass(slots=True)
class _Delivery:
    command: Command
    #: The latest delivery's receipt handle: SQS only honours the newest one.
    receipt_handle: str | None
    seen_at: float
    done: bool = False
    #: An outcome decided but not yet stored (its write failed; retried on redelivery).
    unwritten: CommandOutcome | None = None


class CommandRunner:
    def __init__(
        self,
        ledger: CommandLedger,
        queue: InstanceQueue,
        io: Offload,
        instance_id: str,
        find_session: Callable[[Command], OcppSession | None],
        *,
        keep_poison_messages: bool,
    ) -> None:
        self._ledger = ledger
        self._queue = queue
        self._io = io
        self._instance_id = instance_id
        self._find_session = find_session
        #: With a DLQ, an unreadable message is left for SQS to move there after its retries.
        self._keep_poison = keep_poison_messages
        self._seen: OrderedDict[str, _Delivery] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._to_delete: list[str] = []
        self._deleter: asyncio.Task[None] | None = None

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def on_message(self, message: Received) -> None:
        if message.body == WAKE_UP_BODY:
            self._delete(message.receipt_handle)
            return
        try:
            command = CommandEnvelope.from_json(message.body).command
        except InvalidRequest:
            log.error(
                "unreadable message on the command queue",
                extra={"messageId": message.message_id, "receiveCount": message.receive_count},
            )
            if not self._keep_poison:
                self._delete(message.receipt_handle)
            return
        self._forget_old()
        delivery = self._seen.get(command.command_id)
        if delivery is None:
            delivery = _Delivery(command, message.receipt_handle, time.monotonic())
            self._seen[command.command_id] = delivery
            self._start(self._run(delivery))
            return
        log.info(
            "duplicate delivery not sent again", extra={"commandId": command.command_id, "charger": command.ocpp_id}
        )
        delivery.receipt_handle = message.receipt_handle
        if delivery.done and delivery.unwritten is not None:
            self._start(self._write(delivery, delivery.unwritten))
        elif delivery.done:
            self._delete_delivery(delivery)

    def _start(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _forget_old(self) -> None:
        horizon = time.monotonic() - DEDUPE_TTL_S
        while self._seen:
            delivery = next(iter(self._seen.values()))
            too_many = len(self._seen) > DEDUPE_MAX_ENTRIES
            if not (delivery.done and (delivery.seen_at < horizon or too_many)):
                return
            self._seen.popitem(last=False)

    async def _run(self, delivery: _Delivery) -> None:
        command = delivery.command
        try:
            outcome = await self._execute(command)
        except Exception:
            log.exception("command failed unexpectedly", extra={"commandId": command.command_id})
            outcome = self._outcome(OutcomeKind.OFFLINE)
        delivery.done = True
        await self._write(delivery, outcome)

    async def _execute(self, command: Command) -> CommandOutcome:
        remaining = command.remaining_s(utcnow())
        if remaining <= 0:
            return self._outcome(OutcomeKind.EXPIRED)
        session = self._find_session(command)
        if session is None:
            return self._outcome(OutcomeKind.OFFLINE)
        try:
            async with asyncio.timeout(remaining):
                reply = await session.send_call(command.action.value, command.payload)
        except TimeoutError:
            return self._outcome(OutcomeKind.TIMEOUT)
        except SessionClosed:
            return self._outcome(OutcomeKind.OFFLINE)
        if isinstance(reply, CallErrorReply):
            return self._outcome(OutcomeKind.CALL_ERROR, error_code=reply.code, error_description=reply.description)
        return self._outcome(OutcomeKind.RESULT, payload=reply.payload)

    def _outcome(self, kind: OutcomeKind, **fields: Any) -> CommandOutcome:
        return CommandOutcome(kind=kind, completed_at=utcnow(), completed_by=self._instance_id, **fields)

    async def _write(self, delivery: _Delivery, outcome: CommandOutcome) -> None:
        command = delivery.command
        extra = {"commandId": command.command_id, "charger": command.ocpp_id, "action": command.action.value}
        try:
            stored = await self._io(self._ledger.complete, command, outcome)
        except Exception:
            delivery.unwritten = outcome
            log.exception("could not store a command outcome; retried on redelivery", extra=extra)
            return
        delivery.unwritten = None
        if stored.completed_by != self._instance_id:
            log.warning("command outcome was already written by %s", stored.completed_by, extra=extra)
        log.info("command completed", extra={**extra, "outcome": outcome.kind.value, "errorCode": outcome.error_code})
        self._delete_delivery(delivery)

    # -- deleting handled messages, batched -------------------------------------------

    def _delete_delivery(self, delivery: _Delivery) -> None:
        if delivery.receipt_handle is not None:
            self._delete(delivery.receipt_handle)
            delivery.receipt_handle = None

    def _delete(self, receipt_handle: str) -> None:
        self._to_delete.append(receipt_handle)
        if self._deleter is None:
            self._deleter = asyncio.get_running_loop().create_task(self._flush_deletes())

    async def _flush_deletes(self) -> None:
        try:
            # Yield once so the deletions of a burst of completions share batches.
            await asyncio.sleep(0)
            while self._to_delete:
                batch, self._to_delete = self._to_delete[:10], self._to_delete[10:]
                try:
                    failed = await self._io(self._queue.delete, batch)
                except Exception:
                    log.exception("could not delete handled messages; SQS will redeliver them")
                    continue
                if failed:
                    log.warning("some handled messages were not deleted", extra={"count": len(failed)})
        finally:
            self._deleter = None

    async def join(self, limit_s: float | None = None) -> bool:
        """Wait for the running commands (and their deletions); False if some outlived ``limit_s``."""
        deadline = None if limit_s is None else time.monotonic() + limit_s
        while self._tasks or self._deleter is not None:
            pending: set[asyncio.Task[None]] = set(self._tasks)
            if self._deleter is not None:
                pending.add(self._deleter)
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            _, late = await asyncio.wait(pending, timeout=left)
            if late and deadline is not None and time.monotonic() >= deadline:
                return False
        return True
