"""Executing the commands that arrive on this instance's queue (the gateway's side of ``evreserve.channel``).

Each command is sent to its charger at most once: deliveries are deduplicated by
command id in memory, which is enough because each queue has exactly one reader
(this process) and dies with it. The outcome is written with the ledger's
exactly-once conditional write; a message is deleted only once that write is done,
so a failed write is retried on the message's redelivery without re-sending.

Deletions linger (``GATEWAY_DELETE_LINGER_S``) so that the commands completing within
a second share one DeleteMessageBatch; they are flushed at once when ten are pending
and when the runner drains (``join``). A deletion lost to a crash or a failed request
only means SQS redelivers the message after the visibility timeout, and the dedupe
above drops it unsent (and deletes it).
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
from evreserve.errors import DependencyUnavailable, InvalidRequest
from evreserve.models import Command, CommandAction, CommandOutcome, OutcomeKind, utcnow
from evreserve.ocpp_mapping import cancel_reservation_payload

from .instance_queue import WAKE_UP_BODY, InstanceQueue, Received
from .ocpp_session import CallErrorReply, CallResultReply, OcppSession, Reply, SessionClosed
from .offload import Offload

log = logging.getLogger(__name__)

#: How long a command id is remembered; longer than SQS could redeliver it
#: (visibility timeout x max receive count, bounded by the queue's retention).
DEDUPE_TTL_S = 600.0
DEDUPE_MAX_ENTRIES = 100_000


#: Pauses between attempts to store an outcome while storage is failing; together well
#: within the API's grace period, so a short outage does not turn an answer into a
#: timeout. After them the message's redelivery retries.
WRITE_RETRIES_S = (0.1, 0.2, 0.4, 0.8)
#: How long a compensating CancelReservation may take.
UNDO_TIMEOUT_S = 10.0
#: SQS deletes at most this many messages per DeleteMessageBatch.
DELETE_BATCH = 10
#: How long a handled message may wait for others to share its DeleteMessageBatch
#: (the setting's default; see ``GatewaySettings.gateway_delete_linger_s``).
DELETE_LINGER_S = 1.0


@dataclass(slots=True)
class _Delivery:
    command: Command
    #: SQS message id -> its latest receipt handle (SQS only honours the newest one).
    #: Several messages when the same envelope was queued more than once: each copy
    #: must be deleted, or it comes back after the visibility timeout.
    receipts: dict[str, str]
    seen_at: float
    done: bool = False
    #: An outcome decided but not yet stored (its write failed; retried on redelivery).
    unwritten: CommandOutcome | None = None
    #: The session the command was sent on, for a compensating call.
    session: OcppSession | None = None


def _accepted(outcome: CommandOutcome) -> bool:
    return outcome.kind is OutcomeKind.RESULT and (outcome.payload or {}).get("status") == "Accepted"


def _reservation_id(command: Command) -> int | None:
    """The charger-side reservation id of a ReserveNow (1.6 ``reservationId``, 2.0.1 ``id``)."""
    value = command.payload.get("reservationId", command.payload.get("id"))
    return value if isinstance(value, int) else None


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
        delete_linger_s: float = DELETE_LINGER_S,
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
        self._linger_s = delete_linger_s
        #: Receipt handles to delete, each with when it was handed over (monotonic).
        self._to_delete: list[tuple[str, float]] = []
        self._deleter: asyncio.Task[None] | None = None
        #: Set when the pending deletions must go now (a full batch, or a drain).
        self._flush_now = asyncio.Event()
        #: ``join`` calls running: while one waits, nothing lingers.
        self._joining = 0

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
            delivery = _Delivery(command, {message.message_id: message.receipt_handle}, time.monotonic())
            self._seen[command.command_id] = delivery
            self._start(self._run(delivery))
            return
        log.info(
            "duplicate delivery not sent again", extra={"commandId": command.command_id, "charger": command.ocpp_id}
        )
        delivery.receipts[message.message_id] = message.receipt_handle
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
            outcome = await self._execute(delivery)
        except Exception:
            log.exception("command failed unexpectedly", extra={"commandId": command.command_id})
            outcome = self._outcome(OutcomeKind.OFFLINE)
        delivery.done = True
        await self._write(delivery, outcome)

    async def _execute(self, delivery: _Delivery) -> CommandOutcome:
        command = delivery.command
        remaining = command.remaining_s(utcnow())
        if remaining <= 0:
            return self._outcome(OutcomeKind.EXPIRED)
        session = self._find_session(command)
        if session is None:
            return self._outcome(OutcomeKind.OFFLINE)
        delivery.session = session

        def on_late(reply: Reply) -> None:
            # The outcome stands as timeout; whatever the charger did must agree with it.
            if isinstance(reply, CallResultReply):
                self._reconcile(delivery, self._outcome(OutcomeKind.RESULT, payload=reply.payload), None)

        try:
            async with asyncio.timeout(remaining):
                reply = await session.send_call(command.action.value, command.payload, on_late)
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
        pauses = iter(WRITE_RETRIES_S)
        while True:
            try:
                stored = await self._io(self._ledger.complete, command, outcome)
                break
            except DependencyUnavailable:
                pause = next(pauses, None)
                if pause is None:
                    delivery.unwritten = outcome
                    log.exception("could not store a command outcome; retried on redelivery", extra=extra)
                    return
                await asyncio.sleep(pause)
            except Exception:
                delivery.unwritten = outcome
                log.exception("could not store a command outcome; retried on redelivery", extra=extra)
                return
        delivery.unwritten = None
        if stored != outcome:
            log.warning("command outcome was already written by %s", stored.completed_by, extra=extra)
            self._reconcile(delivery, outcome, stored)
        log.info("command completed", extra={**extra, "outcome": stored.kind.value, "errorCode": stored.error_code})
        self._delete_delivery(delivery)

    # -- keeping the charger and the records in agreement -------------------------------

    def _reconcile(self, delivery: _Delivery, answer: CommandOutcome, stored: CommandOutcome | None) -> None:
        """The charger accepted a command whose recorded outcome says otherwise: undo it on the charger.

        ``stored`` is the outcome that stands (``None``: the one this instance wrote,
        a timeout). A ReserveNow the charger accepted too late, or after the API gave
        up waiting, left the charger holding a reservation recorded as failed: it is
        cancelled there, so the charger frees the connector and nobody is refused a
        charge for a reservation the service does not know about. A late accepted
        CancelReservation is already what the charger did; it needs no call.
        """
        command = delivery.command
        if command.action is not CommandAction.RESERVE_NOW or not _accepted(answer):
            return
        if stored is not None and _accepted(stored):
            return
        reservation_id = _reservation_id(command)
        session = delivery.session
        if reservation_id is None or session is None or session.closed:
            log.warning(
                "a charger holds a reservation recorded as failed and cannot be told to drop it",
                extra={"commandId": command.command_id, "charger": command.ocpp_id, "reservationId": reservation_id},
            )
            return
        self._start(self._undo_reservation(command, session, reservation_id))

    async def _undo_reservation(self, command: Command, session: OcppSession, reservation_id: int) -> None:
        extra = {"commandId": command.command_id, "charger": command.ocpp_id, "reservationId": reservation_id}
        log.warning("cancelling a reservation the charger accepted after its outcome was recorded", extra=extra)
        try:
            async with asyncio.timeout(UNDO_TIMEOUT_S):
                reply = await session.send_call(
                    CommandAction.CANCEL_RESERVATION.value, cancel_reservation_payload(reservation_id)
                )
        except (TimeoutError, SessionClosed):
            log.warning("could not cancel the reservation on the charger", extra=extra)
            return
        log.info("reservation cancelled on the charger", extra={**extra, "reply": repr(reply)})

    # -- deleting handled messages, batched -------------------------------------------

    def _delete_delivery(self, delivery: _Delivery) -> None:
        receipts, delivery.receipts = delivery.receipts, {}
        for receipt_handle in receipts.values():
            self._delete(receipt_handle)

    def _delete(self, receipt_handle: str) -> None:
        self._to_delete.append((receipt_handle, time.monotonic()))
        if len(self._to_delete) >= DELETE_BATCH or self._joining:
            self._flush_now.set()
        if self._deleter is None:
            self._deleter = asyncio.get_running_loop().create_task(self._flush_deletes())

    async def _linger(self) -> None:
        """Wait until a full batch is pending, a drain begins, or the oldest deletion has waited long enough."""
        if len(self._to_delete) >= DELETE_BATCH or self._joining:
            return
        left = self._to_delete[0][1] + self._linger_s - time.monotonic()
        if left <= 0:
            # Still yield once, so the deletions of a burst of completions share batches.
            await asyncio.sleep(0)
            return
        self._flush_now.clear()
        try:
            async with asyncio.timeout(left):
                await self._flush_now.wait()
        except TimeoutError:
            pass

    async def _flush_deletes(self) -> None:
        try:
            while self._to_delete:
                await self._linger()
                taken, self._to_delete = self._to_delete[:DELETE_BATCH], self._to_delete[DELETE_BATCH:]
                batch = [receipt_handle for receipt_handle, _ in taken]
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
        """Wait for the running commands and flush their deletions now; False if some outlived ``limit_s``."""
        deadline = None if limit_s is None else time.monotonic() + limit_s
        self._joining += 1
        try:
            while self._tasks or self._deleter is not None:
                self._flush_now.set()
                pending: set[asyncio.Task[None]] = set(self._tasks)
                if self._deleter is not None:
                    pending.add(self._deleter)
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                _, late = await asyncio.wait(pending, timeout=left)
                if late and deadline is not None and time.monotonic() >= deadline:
                    return False
            return True
        finally:
            self._joining -= 1
