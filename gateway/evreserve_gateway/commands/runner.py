"""The home of executing a queued command: dedupe, send it to its charger, store its outcome, undo a late acceptance.

This is the gateway's side of ``evreserve.channel``. Each command is sent to its charger
at most once: deliveries are deduplicated in memory by the command's id *and* creation
time, which is enough because each queue has exactly one reader (this process) and dies
with it. The creation time is part of the identity because the API re-creates a command
under the same id when its record outlived its window or was never queued (``not_sent``,
which an ambiguous SendMessage failure can record for a message that did go out): that
one is a new command, to be sent and answered, not a redelivery to drop. The outcome
is written with the ledger's exactly-once conditional write. Handled messages are not
deleted but expire (``queue``). An outcome that could not be stored (nor spooled) is kept
in memory and written again later, in this process, until it is stored or
``REWRITE_FOR_S`` have passed: SQS's redelivery would add nothing, since the queue dies
with the process that holds the outcome.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from evreserve import lifecycle
from evreserve.channel import CloseSession, ControlEnvelope, read_message
from evreserve.errors import DependencyUnavailable, InvalidRequest
from evreserve.models import Command, CommandAction, CommandOutcome, OutcomeKind, utcnow
from evreserve.ocpp_mapping import cancel_reservation_payload, reserves_whole_charger
from evreserve.storage.commands import CommandLedger
from evreserve.storage.reservations import ReservationStore

from ..offload import Offload
from ..protocol import CallErrorReply, CallResultReply, OcppSession, Reply, SessionClosed
from .context import command_context
from .queue import Received, Redeliveries
from .spool import OutcomeSpool

#: The logger name these records had before the commands got a package of their own.
log = logging.getLogger("evreserve_gateway.commands")


#: How long a command id is remembered; longer than SQS could redeliver it (the
#: queue's retention, ``queue.RETENTION_S``).
DEDUPE_TTL_S = 600.0
DEDUPE_MAX_ENTRIES = 100_000


#: Pauses between attempts to store an outcome while storage is failing; together well
#: within the API's grace period, so a short outage does not turn an answer into a
#: timeout. After them the outcome is spooled, or written again later (``REWRITE_AFTER_S``).
WRITE_RETRIES_S = (0.1, 0.2, 0.4, 0.8)
#: Pauses between the later attempts at an outcome neither stored nor spooled (the last
#: repeats). Late is still worth it: a write that finds the API's ``timeout`` stored
#: first is what undoes a reservation the charger accepted (``_reconcile``).
REWRITE_AFTER_S = (5.0, 10.0, 20.0, 30.0)
#: How long after the command arrived its outcome is still tried; then it is given up.
REWRITE_FOR_S = 600.0
#: How long a compensating CancelReservation may take.
UNDO_TIMEOUT_S = 10.0


@dataclass(slots=True)
class _Delivery:
    command: Command
    #: The latest copy's receipt handle (SQS honours only the newest), to ask it back.
    receipt_handle: str
    seen_at: float
    done: bool = False
    #: An outcome decided but not yet stored (its write failed; written again later).
    unwritten: CommandOutcome | None = None
    #: The later attempts at ``unwritten``, while they run.
    rewriting: asyncio.Task[None] | None = None
    #: The session the command was sent on, for a compensating call.
    session: OcppSession | None = None


def _accepted(outcome: CommandOutcome) -> bool:
    return outcome.kind is OutcomeKind.RESULT and (outcome.payload or {}).get("status") == "Accepted"


def _identity(command: Command) -> tuple[str, str]:
    """What makes a delivery a copy of a command already seen: its id and when it was created."""
    return command.command_id, command.created_at.isoformat()


def _reservation_id(command: Command) -> int | None:
    """The charger-side reservation id of a ReserveNow (1.6 ``reservationId``, 2.0.1 ``id``)."""
    value = command.payload.get("reservationId", command.payload.get("id"))
    return value if isinstance(value, int) else None


class CommandRunner:
    def __init__(
        self,
        ledger: CommandLedger,
        reservations: ReservationStore,
        redeliveries: Redeliveries,
        io: Offload,
        instance_id: str,
        find_session: Callable[[Command], OcppSession | None],
        *,
        keep_poison_messages: bool,
        spool: OutcomeSpool | None = None,
        control: Callable[[CloseSession], None] = lambda _request: None,
        on_completed: Callable[[str, float], None] = lambda _outcome, _seconds: None,
    ) -> None:
        #: (outcome, seconds since the command arrived) of each command whose outcome was stored.
        self._on_completed = on_completed
        self._ledger = ledger
        self._reservations = reservations
        self._redeliveries = redeliveries
        self._io = io
        self._instance_id = instance_id
        self._find_session = find_session
        self._spool = spool
        #: What to do with a control message (close a session): the connection table's.
        self._control = control
        #: With a DLQ, an unreadable message is shown again until SQS moves it there.
        self._keep_poison = keep_poison_messages
        self._seen: OrderedDict[tuple[str, str], _Delivery] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        #: The later attempts at unstored outcomes: not awaited by a drain (``abandon_rewrites``).
        self._rewrites: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def on_message(self, message: Received) -> None:
        try:
            envelope = read_message(message.body)
        except InvalidRequest:
            log.error(
                "unreadable message on the command queue",
                extra={"messageId": message.message_id, "receiveCount": message.receive_count},
            )
            if self._keep_poison:
                self._redeliveries.later(message.receipt_handle, 0)
            return
        if isinstance(envelope, ControlEnvelope):
            self._control(envelope.close)
            return
        command = envelope.command
        self._forget_old()
        delivery = self._seen.get(_identity(command))
        if delivery is None:
            delivery = _Delivery(command, message.receipt_handle, time.monotonic())
            self._seen[_identity(command)] = delivery
            self._start(self._run(delivery))
            return
        log.info("duplicate delivery not sent again", extra=command_context(command))
        delivery.receipt_handle = message.receipt_handle
        if delivery.done and delivery.unwritten is not None:
            self._start(self._write(delivery, delivery.unwritten))

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
            log.exception("command failed unexpectedly", extra=command_context(command))
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

        if command.action is CommandAction.RESERVE_NOW and reserves_whole_charger(command.payload):
            session.events.expect_placement()
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
        extra = command_context(command)
        pauses = iter(WRITE_RETRIES_S)
        while True:
            try:
                stored = await self._io(self._ledger.complete, command, outcome)
                break
            except DependencyUnavailable:
                pause = next(pauses, None)
                if pause is None:
                    await self._keep(delivery, outcome, extra)
                    return
                await asyncio.sleep(pause)
            except Exception:
                log.exception("could not store a command outcome; written again later", extra=extra)
                self._retry_later(delivery, outcome)
                return
        delivery.unwritten = None
        if stored != outcome:
            log.warning("command outcome was already written by %s", stored.completed_by, extra=extra)
            self._reconcile(delivery, outcome, stored)
        log.info("command completed", extra={**extra, "outcome": stored.kind.value, "errorCode": stored.error_code})
        self._on_completed(stored.kind.value, time.monotonic() - delivery.seen_at)

    async def _keep(self, delivery: _Delivery, outcome: CommandOutcome, extra: dict[str, str]) -> None:
        """Storage keeps failing: hand the outcome to the spool, or keep it to write again later."""
        if self._spool is not None:
            try:
                await self._io(self._spool.put, delivery.command, outcome)
            except Exception:
                log.exception("could not spool a command outcome either; written again later", extra=extra)
            else:
                log.warning("could not store a command outcome; spooled until storage is back", extra=extra)
                delivery.unwritten = None
                return
        else:
            log.error("could not store a command outcome; written again later", extra=extra)
        self._retry_later(delivery, outcome)

    def _retry_later(self, delivery: _Delivery, outcome: CommandOutcome) -> None:
        """Keep the outcome and write it again later (one series of attempts per command)."""
        delivery.unwritten = outcome
        if delivery.rewriting is None:
            task = asyncio.get_running_loop().create_task(self._rewrite(delivery))
            delivery.rewriting = task
            self._rewrites.add(task)
            task.add_done_callback(self._rewrites.discard)

    async def _rewrite(self, delivery: _Delivery) -> None:
        pauses = iter(REWRITE_AFTER_S)
        pause = REWRITE_AFTER_S[0]
        try:
            while delivery.unwritten is not None:
                pause = next(pauses, pause)
                if time.monotonic() + pause - delivery.seen_at > REWRITE_FOR_S:
                    log.error(
                        "gave up storing a command outcome; the API recorded its own",
                        extra={**command_context(delivery.command), "outcome": delivery.unwritten.kind.value},
                    )
                    return
                await asyncio.sleep(pause)
                # _write keeps the outcome in ``unwritten`` if this attempt fails too.
                await self._write(delivery, delivery.unwritten)
        finally:
            delivery.rewriting = None

    def abandon_rewrites(self) -> int:
        """At shutdown: stop the later attempts; how many outcomes were left unstored."""
        for task in self._rewrites:
            task.cancel()
        return len(self._rewrites)

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
                extra={**command_context(command), "reservationId": reservation_id},
            )
            return
        self._start(self._undo_reservation(command, session, reservation_id))

    async def _undo_needed(self, command: Command) -> bool:
        """Whether the record still says what the late answer contradicts (``lifecycle.undo_needed``)."""
        ref = command.reservation
        if ref is None:
            return True  # nothing recorded to agree with but the outcome itself
        record = await self._io(self._reservations.get, ref.account_id, ref.reservation_id)
        return lifecycle.undo_needed(record, command.command_id)

    async def _undo_reservation(self, command: Command, session: OcppSession, reservation_id: int) -> None:
        extra = {**command_context(command), "reservationId": reservation_id}
        try:
            needed = await self._undo_needed(command)
        except Exception:
            # Unknown: a cancel could drop a newer reservation the record calls active,
            # leaving it undone could leave one the record calls failed. The second is
            # what the record already tells the partner (Failed, CHARGER_TIMEOUT).
            log.exception("could not read the reservation; the late answer is not undone", extra=extra)
            return
        if not needed:
            log.info("late answer not undone: the reservation has moved on since", extra=extra)
            return
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

    # -- draining -----------------------------------------------------------------------

    async def join(self, limit_s: float | None = None) -> bool:
        """Wait for the running commands and their requests for redelivery; False if some outlived ``limit_s``.

        Later attempts at unstored outcomes are not waited for (``abandon_rewrites``).
        """
        deadline = None if limit_s is None else time.monotonic() + limit_s
        while True:
            pending: set[asyncio.Task[None]] = set(self._tasks) | self._redeliveries.pending()
            if not pending:
                return True
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            _, late = await asyncio.wait(pending, timeout=left)
            if late and deadline is not None and time.monotonic() >= deadline:
                return False
