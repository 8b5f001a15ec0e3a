"""The home of the gateway's OCPP message log: every CALL and its answer, batched per charger, stored off the loop.

A session hands each finished CALL to its charger's ``ChargerTraffic`` (a tuple appended
to a list: nothing else happens on the event loop). A charger's buffer is sealed into a
batch once its first message is ``flush_s`` old, or it holds ``BATCH_MAX_CHARS`` of frames,
and the writer (``log_writer``: a process of its own when deployed) stores sealed batches
25 to a request, so neither a slow table nor the packing ever holds what commands need.

The log must never slow or stop charger traffic: everything buffered (open and sealed)
is bounded by ``max_bytes``. While storage is slow or down, the writer retries with
backoff and the batches wait; once the bound is reached, new messages are dropped and
counted. Drops, write failures and the counters are in the log lines and in an
embedded-metric-format record once a minute (CloudWatch turns it into metrics).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from evreserve.errors import DependencyUnavailable
from evreserve.messagelog import Direction
from evreserve.storage.messages import WRITE_BATCH, Batch

from .log_writer import LogWriter
from .logs import EMBEDDED_METRICS

log = logging.getLogger("evreserve_gateway.traffic")

#: Characters of frames per batch. A record that would take a batch past it starts the next
#: one, so a batch is at most this: 320 KB even if every character took UTF-8's 4 bytes and
#: nothing compressed, under DynamoDB's 400 KB item.
BATCH_MAX_CHARS = 80 * 1024
#: A frame longer than this is logged with its payload replaced by a note.
FRAME_MAX_CHARS = 32 * 1024
#: Longest one write of 25 batches may take before it counts as failed (a hung connection,
#: a stuck writer process); the writer process is then replaced.
WRITE_TIMEOUT_S = 60.0
#: How often sealed batches are looked for, and the embedded metrics' period.
TICK_S = 1.0
METRICS_PERIOD_S = 60.0
BACKOFF_MAX_S = 30.0
#: The namespace of the gateway's embedded metrics.
METRICS_NAMESPACE = "EvReserve/Gateway"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class ChargerTraffic:
    """One charger's open batch; what a session records its CALLs through."""

    __slots__ = ("_log", "account_id", "charger_id", "ocpp_id", "opened", "protocol", "records", "size")

    def __init__(self, log: MessageLog, charger_id: int, account_id: int, ocpp_id: str, protocol: str) -> None:
        self._log = log
        self.charger_id = charger_id
        self.account_id = account_id
        self.ocpp_id = ocpp_id
        self.protocol = protocol
        self.records: list[tuple[int, int, str, str, str | None]] = []
        self.size = 0
        #: Monotonic time of the open batch's first record.
        self.opened = 0.0

    def received(self, at_ms: int, action: str, call: str | bytes, answer: str) -> None:
        """A CALL from the charger (its own text) and the gateway's answer."""
        if isinstance(call, bytes):
            call = call.decode("utf-8", "replace")
        self._log.add(self, (at_ms, Direction.FROM_CHARGER, action, call, answer))

    def sent(self, at_ms: int, action: str, call: str, answer: str | None) -> None:
        """A CALL of the gateway's and the charger's answer (``None``: none came in time)."""
        self._log.add(self, (at_ms, Direction.TO_CHARGER, action, call, answer))

    def invalid_frame(self) -> None:
        """A frame that was no valid CALL or answer: counted, never logged as a message."""
        self._log.counters["invalidFrames"] += 1


class MessageLog:
    """The log of one gateway instance: open batches per charger, sealed ones, the writer."""

    def __init__(
        self,
        writer: LogWriter,
        *,
        flush_s: float,
        max_bytes: int,
        instance_id: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.writer = writer
        #: Monotonic seconds; a benchmark replays a fleet's day through it.
        self._clock = clock
        self._flush_s = flush_s
        # A batch waits at most flush_s plus one tick.
        self._tick = min(TICK_S, flush_s)
        self._max_bytes = max_bytes
        self._instance_id = instance_id
        #: Open batches in the order they opened. An OrderedDict, not a dict: sealing takes
        #: from the front, where a plain dict leaves holes that every later walk re-scans.
        self._open: OrderedDict[ChargerTraffic, None] = OrderedDict()
        self._sealed: deque[Batch] = deque()
        self._sealed_bytes: deque[int] = deque()
        self._bytes = 0
        self._wake = asyncio.Event()
        # A random prefix per instance and a counter: batch ids unique across instances and restarts.
        self._prefix = secrets.token_hex(6)
        self._ids = itertools.count(1)
        self.counters: dict[str, int] = dict.fromkeys(
            (
                # Traffic, whether or not the log keeps it: CALLs each way, and the
                # CALLERRORs among their answers (sent: the gateway refused a charger's
                # CALL; received: a charger refused the gateway's).
                "fromCharger",
                "toCharger",
                "callErrorsSent",
                "callErrorsReceived",
                "logged",
                "dropped",
                "invalidFrames",
                "batchesWritten",
                "messagesWritten",
                "batchesDropped",
                "writeFailures",
            ),
            0,
        )
        self._reported: dict[str, int] = dict(self.counters)
        self._drop_warned = False

    def for_charger(self, charger_id: int, account_id: int, ocpp_id: str, protocol: str) -> ChargerTraffic:
        return ChargerTraffic(self, charger_id, account_id, ocpp_id, protocol)

    @property
    def buffered_bytes(self) -> int:
        return self._bytes

    # -- on the event loop: O(1) per message ------------------------------------------------

    def add(self, traffic: ChargerTraffic, record: tuple[int, int, str, str, str | None]) -> None:
        # Characters, not bytes: cheap to count here. Memory is bounded in the same unit
        # (docs/gateway.md gives the bytes it stands for).
        call, answer = record[3], record[4]
        from_charger = record[1] == Direction.FROM_CHARGER
        self.counters["fromCharger" if from_charger else "toCharger"] += 1
        # A charger may put whitespace in its frames ("[ 4, ..."); ours never do.
        if answer is not None and answer.lstrip("[ \t\r\n").startswith("4"):
            self.counters["callErrorsSent" if from_charger else "callErrorsReceived"] += 1
        if len(call) > FRAME_MAX_CHARS or (answer is not None and len(answer) > FRAME_MAX_CHARS):
            record = _shortened(record)
            call, answer = record[3], record[4]
        size = len(call) + (len(answer) if answer is not None else 4) + 24
        if self._bytes + size > self._max_bytes:
            self.counters["dropped"] += 1
            if not self._drop_warned:
                # Once per report period: the count follows in the report.
                self._drop_warned = True
                log.warning(
                    "the OCPP message log is full (storage slow or down); dropping new messages",
                    extra={"bufferedBytes": self._bytes, "maxBytes": self._max_bytes},
                )
            return
        self.counters["logged"] += 1
        self._bytes += size
        if traffic.records and traffic.size + size > BATCH_MAX_CHARS:
            self._seal(traffic)
            self._wake.set()
        if not traffic.records:
            traffic.opened = self._clock()
            self._open[traffic] = None
        traffic.records.append(record)
        traffic.size += size

    def _seal(self, traffic: ChargerTraffic) -> None:
        self._open.pop(traffic, None)
        records, traffic.records = traffic.records, []
        size, traffic.size = traffic.size, 0
        batch_id = f"{self._prefix}{next(self._ids):x}"
        self._sealed.append(
            Batch(batch_id, traffic.charger_id, traffic.account_id, traffic.ocpp_id, traffic.protocol, records)
        )
        self._sealed_bytes.append(size)

    def seal_due(self, now: float | None = None) -> int:
        """Seal the batches whose first record is ``flush_s`` old; how many."""
        now = self._clock() if now is None else now
        sealed = 0
        # Opened in order: the first that is not due ends the walk, so a tick costs what it seals.
        while self._open:
            traffic = next(iter(self._open))  # O(1) on an OrderedDict (its linked list)
            if now - traffic.opened < self._flush_s:
                break
            self._seal(traffic)
            sealed += 1
        return sealed

    def take_sealed(self) -> list[Batch]:
        """The sealed batches, handed to the caller instead of the writer (the cost benchmark)."""
        batches = list(self._sealed)
        self._sealed.clear()
        self._sealed_bytes.clear()
        self._bytes = sum(t.size for t in self._open)
        return batches

    def seal_all(self) -> None:
        for traffic in list(self._open):
            self._seal(traffic)

    # -- the writer -------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        """Seal and store until ``stopping``; then the caller runs ``flush`` (bounded).

        Sealing goes on every tick while a write is in flight: a slow write must not let an
        open batch outgrow the span the listing relies on (``SPAN_MAX_MS``).
        """
        backoff = self._tick
        next_write = 0.0
        next_report = time.monotonic() + METRICS_PERIOD_S
        writing: asyncio.Task[bool] | None = None
        try:
            while not stopping.is_set():
                self.seal_due()
                if writing is not None and writing.done():
                    ok = writing.result()
                    writing = None
                    backoff = self._tick if ok else min(backoff * 2, BACKOFF_MAX_S)
                    next_write = time.monotonic() + (0.0 if ok else backoff)
                if writing is None and self._sealed and time.monotonic() >= next_write:
                    writing = asyncio.get_running_loop().create_task(self._write_some())
                if time.monotonic() >= next_report:
                    self.report()
                    next_report = time.monotonic() + METRICS_PERIOD_S
                self._wake.clear()
                waits: set[asyncio.Future[Any]] = {
                    asyncio.ensure_future(stopping.wait()),
                    asyncio.ensure_future(self._wake.wait()),
                }
                if writing is not None:
                    waits.add(writing)
                try:
                    await asyncio.wait(waits, timeout=self._tick, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiting in waits:
                        if waiting is not writing:
                            waiting.cancel()
        finally:
            if writing is not None and not writing.done():
                # The batches it took are still at the head of the queue: the flush writes them.
                writing.cancel()

    async def flush(self) -> None:
        """Store everything buffered (the gateway stops); the caller bounds the time."""
        self.seal_all()
        while self._sealed:
            if not await self._write_some():
                await asyncio.sleep(TICK_S)

    async def _write_some(self) -> bool:
        count = min(len(self._sealed), WRITE_BATCH)
        batches = [self._sealed[i] for i in range(count)]
        try:
            refused = set(await asyncio.wait_for(self.writer.put(batches), WRITE_TIMEOUT_S))
        except TimeoutError:
            self.counters["writeFailures"] += 1
            log.warning("storing the OCPP message log timed out; restarting the writer")
            self.writer.restart()
            return False
        except DependencyUnavailable as exc:
            self.counters["writeFailures"] += 1
            log.warning(
                "could not store the OCPP message log; keeping it while memory allows",
                extra={"error": str(exc), "bufferedBytes": self._bytes, "dropped": self.counters["dropped"]},
            )
            return False
        except Exception:
            self.counters["writeFailures"] += 1
            log.exception("storing the OCPP message log failed", extra={"bufferedBytes": self._bytes})
            return False
        for _ in range(count):
            self._sealed.popleft()
            self._bytes -= self._sealed_bytes.popleft()
        stored = [b for b in batches if b.batch_id not in refused]
        self.counters["batchesWritten"] += len(stored)
        self.counters["messagesWritten"] += sum(len(b.records) for b in stored)
        if refused:
            # Throttled past retries, or refused as invalid: given up rather than let one
            # batch hold the queue (and memory) forever.
            self.counters["batchesDropped"] += len(refused)
            log.warning("DynamoDB refused message log batches; dropped them", extra={"batches": len(refused)})
        return True

    def report(self) -> None:
        """Log the counters since the last report as CloudWatch embedded metrics, and any drop as a warning."""
        delta = {name: value - self._reported[name] for name, value in self.counters.items()}
        self._reported = dict(self.counters)
        self._drop_warned = False
        if delta["dropped"] or delta["batchesDropped"]:
            log.warning(
                "the OCPP message log dropped messages (storage slow or down, or its memory bound reached)",
                extra={"dropped": delta["dropped"], "batchesDropped": delta["batchesDropped"]},
            )
        record: dict[str, Any] = {
            "_aws": {
                "Timestamp": _now_ms(),
                "CloudWatchMetrics": [
                    {
                        "Namespace": METRICS_NAMESPACE,
                        # Per instance, and summed over the fleet (the dashboard's view).
                        "Dimensions": [["InstanceId"], []],
                        "Metrics": [{"Name": f"MessageLog.{name}", "Unit": "Count"} for name in delta]
                        + [{"Name": "MessageLog.bufferedBytes", "Unit": "Bytes"}],
                    }
                ],
            },
            "InstanceId": self._instance_id,
            **{f"MessageLog.{name}": value for name, value in delta.items()},
            "MessageLog.bufferedBytes": self._bytes,
        }
        log.info("message log counters", extra={EMBEDDED_METRICS: record})


def _shortened(record: tuple[int, int, str, str, str | None]) -> tuple[int, int, str, str, str | None]:
    """A record whose frames are too large to log, with a note in place of each large payload."""
    at, direction, action, call, answer = record
    note = {"logged": False, "reason": f"frame over {FRAME_MAX_CHARS} characters"}
    # The message id is not kept: finding it would take parsing the very frame that is too large.
    short_call = call if len(call) <= FRAME_MAX_CHARS else json.dumps([2, "", action, note])
    short_answer = answer
    if answer is not None and len(answer) > FRAME_MAX_CHARS:
        short_answer = json.dumps([3, "", note])
    return at, direction, action, short_call, short_answer
