"""The command channel: how an API function has a gateway instance talk to a charger (the SQS side).

The records behind it are the command ledger (``evreserve.storage.commands``).

Contract (version 1):

1. The function writes the command record (``CommandsTable``), in one transaction with
   whatever record the command changes (e.g. the reservation, ``Pending``). The record's
   id derives from the API request, so a retried request finds the same record and
   waits for the same outcome instead of sending a second command.
2. It sends a ``CommandEnvelope`` (JSON) to the queue of the instance holding the
   charger (the queue URL is in the charger's connection record).
3. The instance sends the OCPP call at most once (it ignores redelivered envelopes)
   and writes the outcome exactly once with ``complete_command``: the charger's answer,
   its CALLERROR, ``timeout``, ``offline`` (not held / left mid-call) or ``expired``
   (arrived after the deadline, not sent).
4. The function polls the record until the outcome appears. Past the deadline plus a
   grace period it writes ``timeout`` itself through the same conditional write; if
   the gateway won that race, the gateway's outcome is the answer. Either way exactly
   one outcome exists and every waiter returns it.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from .aws import ClientError, adopt, queue_is_gone, unavailable_on_transport_errors
from .errors import DependencyUnavailable, DomainError, InvalidRequest, TooManyCommands
from .models import Command, CommandOutcome, Model, OutcomeKind, utcnow
from .settings import ChannelSettings
from .storage import ratelimit
from .storage.commands import CommandLedger, Submitted

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

ENVELOPE_VERSION = 1

#: Seconds between polls for an outcome. The first pause is a cold instance's; after that
#: it is learnt (``FirstPoll``). A miss is read again 5 ms later, twice, then every 10 ms
#: for a while (the answer is due any moment), then the pauses grow to bound the reads of
#: a slow command. They stop growing at 0.25 s: under load the outcomes land a second or
#: more in, and the waiting function oversleeps each by half the last pause on average
#: (0.25 s when it grew to 0.5 s). The price: an outcome at 1.5 s takes 15 reads, a command
#: that runs into its deadline and grace (22 s) ~97. ``benchmarks/reservation_roundtrip.py
#: --poll-schedule`` compares schedules.
POLL_SCHEDULE_S: Sequence[float] = (0.02, 0.005, 0.005, 0.01, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2, 0.25)
#: Whether the first pause is learnt; the benchmarks turn it off to compare fixed schedules.
LEARN_FIRST_POLL = True
#: The share of first reads meant to find the outcome; the rest cost one read more.
FIRST_POLL_HITS = 0.85
#: How far one first read moves the first pause, in proportion: a hit shortens it by
#: ``(1 - FIRST_POLL_HITS) * FIRST_POLL_STEP`` (3%), a miss lengthens it by
#: ``FIRST_POLL_HITS * FIRST_POLL_STEP`` (19%), on a log scale.
FIRST_POLL_STEP = 0.2
_SHORTER = math.exp(-(1 - FIRST_POLL_HITS) * FIRST_POLL_STEP)
_LONGER = math.exp(FIRST_POLL_HITS * FIRST_POLL_STEP)
#: The learnt first pause stays within these: never later than a cold instance's
#: (``FirstPoll``, on why not).
FIRST_POLL_BOUNDS_S = (0.005, POLL_SCHEDULE_S[0])
#: A first read that missed teaches only if the outcome turned up within this after it.
FIRST_POLL_WINDOW_S = 0.05


class FirstPoll:
    """When to read first after queuing a command, learnt from this instance's first reads.

    Where an outcome lands depends on the deployment (SQS's wake-up, the gateway, the
    storage's write latency) and on the load, so any fixed first pause is either early (a
    wasted read) or late (the caller waits on an answer already stored; at 20 ms fixed the
    local stack's answers waited ~10 ms). The pause tracks the ``FIRST_POLL_HITS`` quantile
    of the landing times (stochastic quantile tracking on a log scale): each first read
    that finds the outcome shortens it by 3%, each that misses lengthens it by 19%, so it
    settles where one first read in seven misses. Steps in proportion rather than in
    milliseconds: after a slow spell (a burst of load) the pause comes back down in a few
    dozen requests, not hundreds.

    It only ever shortens the first read, never past the cold 20 ms: above that, one
    read at a high quantile trades the caller's latency for reads. With outcomes spread
    over 100-300 ms (10 concurrent on the local stack) the 85th percentile made the
    median request wait ~40 ms longer for its answer to save a read and a half, and the
    latency is what the caller feels. Past 20 ms the fixed, dense schedule of later reads
    finds an outcome within a few milliseconds of its landing.

    A miss teaches only when the outcome turned up within ``FIRST_POLL_WINDOW_S`` after
    it: one that came much later is a slow charger (a mobile network's 0.5-2 s, a
    timeout), which says nothing about when the pipeline delivers. Counting those, a
    fleet where more than one charger in seven is slow would keep the pause at 20 ms
    for every fast charger too.

    Shared by the threads of one process (the local API): a lost update between two
    threads only drops one step.
    """

    def __init__(self, initial_s: float) -> None:
        self.pause_s = initial_s

    def learn(self, found_after_s: float | None) -> None:
        """``0``: the first read found the outcome; ``t``: a later read, ``t`` s after the first;
        ``None``: not found (a timeout)."""
        if found_after_s is None or found_after_s > FIRST_POLL_WINDOW_S:
            return
        low, high = FIRST_POLL_BOUNDS_S
        self.pause_s = min(high, max(low, self.pause_s * (_SHORTER if found_after_s <= 0 else _LONGER)))


class CommandEnvelope(Model):
    """The SQS message body from an API function to a gateway instance."""

    v: Literal[1] = 1
    command: Command

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def from_json(cls, body: str | bytes) -> CommandEnvelope:
        try:
            return cls.model_validate_json(body)
        except ValidationError as exc:
            raise InvalidRequest("not a command envelope this version understands", errors=exc.errors()) from exc


class CloseSession(Model):
    """Close a charger's live session (its credentials changed, it was deleted, or it connected elsewhere)."""

    charger_id: int
    #: Only this connection; ``None``: whichever the instance holds for the charger.
    session_id: str | None = None
    reason: str


class ControlEnvelope(Model):
    """An SQS message to a gateway instance that is not a command: nothing is sent to the charger."""

    v: Literal[1] = 1
    close: CloseSession

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


def read_message(body: str | bytes) -> CommandEnvelope | ControlEnvelope:
    """What arrived on an instance queue; ``InvalidRequest`` for anything else."""
    try:
        return CommandEnvelope.from_json(body)
    except InvalidRequest:
        try:
            return ControlEnvelope.model_validate_json(body)
        except ValidationError as exc:
            raise InvalidRequest("not a message this version understands", errors=exc.errors()) from exc


def close_session(sqs: SQSClient, queue_url: str, request: CloseSession) -> None:
    """Ask the instance behind ``queue_url`` to close a session; a queue that is gone has nothing to close.

    Raises ``DependencyUnavailable`` when SQS cannot be reached (the caller decides
    whether that fails its request).
    """
    try:
        with unavailable_on_transport_errors("SQS"):
            sqs.send_message(QueueUrl=queue_url, MessageBody=ControlEnvelope(close=request).to_json())
    except ClientError as exc:
        if not queue_is_gone(exc):
            raise


class CommandChannel:
    """The API side: submit a command, queue it for its gateway instance, await its outcome."""

    def __init__(
        self,
        ledger: CommandLedger,
        sqs: SQSClient,
        settings: ChannelSettings,
        *,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._ledger = ledger
        self._sqs = adopt(sqs)
        self._settings = settings
        self._clock = clock
        self._sleep = sleep
        self.first_poll = FirstPoll(POLL_SCHEDULE_S[0])

    def deadline(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self._settings.command_timeout_s)

    @property
    def _budget_window_s(self) -> int:
        return max(1, math.ceil(self._settings.command_timeout_s + self._settings.command_grace_s))

    def budget(self, account_id: int) -> tuple[dict[str, Any], Callable[[], TooManyCommands]]:
        """The transaction item that counts one of the account's commands, and the error for its failure."""
        now = self._clock()
        window_s = self._budget_window_s
        item = self._ledger.budget_request(account_id, now, self._settings.account_commands_in_flight, window_s)

        def refused() -> TooManyCommands:
            retry_after = max(1, window_s - int(now.timestamp()) % window_s)
            return TooManyCommands(
                f"This account has {self._settings.account_commands_in_flight} commands on their way to chargers;"
                f" retry in {retry_after} s",
                retry_after_s=retry_after,
            )

        return item, refused

    def submit(
        self,
        command: Command,
        also: Sequence[dict[str, Any]] = (),
        on_conflict: Callable[[int], DomainError] | None = None,
        keep_s: int | None = None,
        checks: int = 0,
    ) -> Submitted:
        """Create the command record (``CommandLedger.create``), kept for the idempotency window.

        ``keep_s``: at least this long after the deadline (an ``Idempotency-Key``'s 24 h).
        ``checks``: how many leading items of ``also`` are checks (``CommandLedger.create``).
        """
        now = self._clock()
        keep = max(self._settings.idempotency_window_s, keep_s or 0)
        ttl = int((command.deadline + timedelta(seconds=keep)).timestamp())
        count = ratelimit.due()
        if count is None:
            return self._ledger.create(command, now=now, ttl=ttl, also=also, on_conflict=on_conflict, checks=checks)
        # The request's rate count rides this transaction (evreserve.storage.ratelimit).
        counts, refused = count.counts()

        def conflict(index: int) -> DomainError:
            if index >= len(also):
                count.counted = True  # refused: a refused request counts nowhere, not even later
                return refused(index - len(also))
            if on_conflict is None:
                return DependencyUnavailable("could not record the command", items=[index + 1])
            return on_conflict(index)

        submitted = self._ledger.create(
            command, now=now, ttl=ttl, also=[*also, *counts], on_conflict=conflict, checks=checks
        )
        if submitted.created:
            count.counted = True
        elif submitted.command.outcome is None:
            # A retry of a command still on its way waits for its outcome, up to the
            # deadline: it is counted (or refused) now, not after that wait. One whose
            # outcome is stored is answered at once, or supersedes it with a new command
            # whose transaction carries the count.
            count.settle()
        return submitted

    def send(self, command: Command, queue_url: str) -> None:
        """Queue the command; if that fails, record it as not sent so a retry can queue it anew."""
        body = CommandEnvelope(command=command).to_json()
        try:
            with unavailable_on_transport_errors("SQS"):
                self._sqs.send_message(QueueUrl=queue_url, MessageBody=body)
        except (DependencyUnavailable, ClientError) as exc:
            self._ledger.complete(
                command,
                CommandOutcome(kind=OutcomeKind.NOT_SENT, completed_at=self._clock(), completed_by="api"),
            )
            if isinstance(exc, ClientError) and queue_is_gone(exc):
                # The instance that held the charger is gone and took its queue with it.
                raise DependencyUnavailable("the gateway holding this charger is gone; retry") from exc
            raise

    def wait(self, command: Command, *, sent_now: bool = True) -> CommandOutcome:
        """Poll for the outcome; past the deadline and grace, record a timeout (exactly-once).

        The first read comes after the first pause (``FirstPoll``), not at once: the
        caller has just queued the command (or found it without an outcome), so an
        immediate read would almost always be a wasted request. Only a command queued
        just now (``sent_now``) teaches the first pause: another request's command is
        somewhere along its way already.
        """
        give_up_at = command.deadline + timedelta(seconds=self._settings.command_grace_s)
        first_pause = self.first_poll.pause_s if LEARN_FIRST_POLL else POLL_SCHEDULE_S[0]
        pauses = itertools.chain([first_pause], POLL_SCHEDULE_S[1:], itertools.repeat(POLL_SCHEDULE_S[-1]))
        #: Seconds slept since the first read, while that read may still teach ``first_poll``.
        since_first: float | None = None
        first = True
        while True:
            now = self._clock()
            if now >= give_up_at:
                # complete() returns the gateway's outcome if it was written meanwhile.
                return self._ledger.complete(
                    command, CommandOutcome(kind=OutcomeKind.TIMEOUT, completed_at=now, completed_by="api")
                )
            slept = max(0.0, min(next(pauses), (give_up_at - now).total_seconds()))
            self._sleep(slept)
            if since_first is not None:
                since_first += slept
            try:
                current = self._ledger.get(command.command_id)
            except DependencyUnavailable:
                # A read that failed says nothing of the charger: keep polling until the
                # deadline and grace, rather than answer 503 for a command that may be
                # answered a moment later (a short DynamoDB hiccup). A failed first read
                # says nothing of the timing either.
                first = False
                continue
            if first and sent_now and LEARN_FIRST_POLL:
                since_first = 0.0
            first = False
            if current is not None and current.outcome is not None:
                if since_first is not None:
                    self.first_poll.learn(since_first)
                return current.outcome
