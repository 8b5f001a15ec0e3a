"""The gateway's message log buffer: batching, its memory bound, the writer's retries (in-memory store)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

from evreserve.errors import DependencyUnavailable
from evreserve.messagelog import pack, unpack
from evreserve.storage.messages import Batch
from evreserve_gateway import traffic as traffic_module
from evreserve_gateway.log_writer import ThreadWriter
from evreserve_gateway.logs import JsonFormatter
from evreserve_gateway.offload import Offload
from evreserve_gateway.traffic import BATCH_MAX_CHARS, FRAME_MAX_CHARS, MessageLog


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


class MemoryStore:
    """Stores batches in a list; fails while ``down`` is set, blocks while ``gate`` is clear."""

    def __init__(self) -> None:
        self.stored: list[Batch] = []
        self.down = False
        self.calls = 0
        self.gate = threading.Event()
        self.gate.set()

    def put(self, batches: list[Batch]) -> list[str]:
        self.calls += 1
        self.gate.wait(10)
        if self.down:
            raise DependencyUnavailable("DynamoDB is unreachable", service="DynamoDB")
        self.stored.extend(batches)
        return []


def _log(store: Any = None, **kwargs: Any) -> tuple[MessageLog, Clock]:
    clock = Clock()
    settings = {"flush_s": 10.0, "max_bytes": 1 << 20, "instance_id": "i-1", **kwargs}
    writer = ThreadWriter(store or MemoryStore(), Offload(1, "test-log"))  # type: ignore[arg-type]
    return MessageLog(writer, clock=clock, **settings), clock


async def eventually(condition: Callable[[], object]) -> None:
    """Let the loop run until ``condition`` holds, for up to 2 s; the caller asserts what it needs."""
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)


def _heartbeat(traffic: Any, n: int) -> None:
    traffic.received(n, "Heartbeat", f'[2,"{n}","Heartbeat",{{}}]', f'[3,"{n}",{{"currentTime":"x"}}]')


def test_a_batch_is_sealed_once_its_first_message_is_flush_s_old():
    log, clock = _log()
    a, b = log.for_charger(1, 7, "A", "ocpp1.6"), log.for_charger(2, 7, "B", "ocpp2.0.1")
    _heartbeat(a, 1)
    clock.now += 6
    _heartbeat(b, 2)
    _heartbeat(a, 3)
    clock.now += 5
    assert log.seal_due() == 1
    (batch,) = log.take_sealed()
    assert (batch.charger_id, batch.account_id, batch.ocpp_id, batch.protocol) == (1, 7, "A", "ocpp1.6")
    assert [r[0] for r in batch.records] == [1, 3]
    clock.now += 5
    assert log.seal_due() == 1
    assert [b.ocpp_id for b in log.take_sealed()] == ["B"]


def test_a_batch_never_grows_past_its_bound():
    """A record that would take a batch past BATCH_MAX_CHARS starts the next one, whatever the sizes."""
    log, _ = _log(max_bytes=1 << 30)
    traffic = log.for_charger(1, 1, "A", "ocpp1.6")
    for n, length in enumerate([30_000, 30_000, 30_000, 1_000, 32_000, 32_000, 32_000, 10]):
        call = f'[2,"{n}","DataTransfer",{{"data":"{"x" * length}"}}]'
        traffic.received(n, "DataTransfer", call, f'[3,"{n}",{{}}]')
    log.seal_all()
    batches = log.take_sealed()
    assert sum(len(b.records) for b in batches) == 8
    for batch in batches:
        assert sum(len(r[3]) + len(r[4] or "") for r in batch.records) <= BATCH_MAX_CHARS


def test_a_record_is_counted_at_the_size_it_is_kept():
    """A CALL just under the frame bound with a short answer counts whole against the memory bound."""
    log, _ = _log(max_bytes=16 * 1024 * 1024)
    traffic = log.for_charger(1, 1, "A", "ocpp1.6")
    call = json.dumps([2, "m", "DataTransfer", {"vendorId": "V", "data": "y" * (FRAME_MAX_CHARS - 60)}])
    assert len(call) <= FRAME_MAX_CHARS
    for n in range(600):
        traffic.received(n, "DataTransfer", call, '[3,"m",{"status":"Accepted"}]')
    assert log.buffered_bytes <= 16 * 1024 * 1024
    kept = sum(len(r[3]) for r in traffic.records) + sum(len(r[3]) for b in log.take_sealed() for r in b.records)
    assert kept <= 16 * 1024 * 1024  # what is held, not what was counted
    assert log.counters["dropped"] > 0  # 600 x 32 K characters do not fit in 16 M


def test_past_the_memory_bound_new_messages_are_dropped_and_counted(caplog):
    log, _ = _log(max_bytes=16 * 1024)
    traffic = log.for_charger(1, 1, "A", "ocpp1.6")
    with caplog.at_level(logging.WARNING):
        for n in range(400):
            _heartbeat(traffic, n)
    assert log.buffered_bytes <= 16 * 1024
    assert log.counters["dropped"] > 0
    assert log.counters["logged"] + log.counters["dropped"] == 400
    assert [r.getMessage() for r in caplog.records].count(
        "the OCPP message log is full (storage slow or down); dropping new messages"
    ) == 1


def test_a_frame_too_large_is_logged_with_a_note_instead_of_its_payload():
    log, _ = _log()
    traffic = log.for_charger(1, 1, "A", "ocpp1.6")
    huge = json.dumps([2, "m", "DataTransfer", {"data": "x" * FRAME_MAX_CHARS}])
    traffic.received(5, "DataTransfer", huge, '[3,"m",{"status":"Accepted"}]')
    log.seal_all()
    (batch,) = log.take_sealed()
    (record,) = unpack(pack(batch.records))
    call, answer = json.loads(record[2]), json.loads(record[3])
    assert call[2] == "DataTransfer" and call[3]["logged"] is False
    assert answer == [3, "m", {"status": "Accepted"}]


async def test_the_writer_keeps_batches_while_storage_is_down_and_stores_them_after():
    store = MemoryStore()
    log, clock = _log(store, flush_s=0.05)
    traffic = log.for_charger(1, 1, "A", "ocpp1.6")
    stopping = asyncio.Event()
    store.down = True
    runner = asyncio.create_task(log.run(stopping))
    _heartbeat(traffic, 1)
    clock.now += 1
    await eventually(lambda: log.counters["writeFailures"] >= 1)
    assert log.counters["writeFailures"] >= 1 and store.stored == []
    store.down = False
    _heartbeat(traffic, 2)
    clock.now += 1
    await log.flush()
    stopping.set()
    await runner
    assert sorted(r[0] for b in store.stored for r in b.records) == [1, 2]
    assert log.buffered_bytes == 0 and log.counters["messagesWritten"] == 2


async def test_a_slow_store_never_holds_the_event_loop():
    """While a write blocks on its thread, the loop keeps logging (and answering) at once."""
    store = MemoryStore()
    store.gate.clear()
    log, clock = _log(store, flush_s=0.01)
    traffic = log.for_charger(1, 1, "A", "ocpp1.6")
    stopping = asyncio.Event()
    runner = asyncio.create_task(log.run(stopping))
    _heartbeat(traffic, 1)
    clock.now += 1
    await eventually(lambda: store.calls)
    assert store.calls == 1  # the write is in progress, blocked
    ticks = 0
    for n in range(50):
        _heartbeat(traffic, n + 2)
        await asyncio.sleep(0)
        ticks += 1
    assert ticks == 50 and log.counters["logged"] == 51
    store.gate.set()
    stopping.set()
    await runner
    await log.flush()
    # The write in flight at the stop may be stored twice (the flush cannot know it landed):
    # the same batch id, the same item key, one item in the table.
    unique = {b.batch_id: b for b in store.stored}
    assert sum(len(b.records) for b in unique.values()) == 51


def test_the_report_is_an_embedded_metric_record_at_the_top_level(caplog):
    log, _ = _log()
    traffic = log.for_charger(1, 1, "A", "ocpp1.6")
    _heartbeat(traffic, 1)
    traffic.invalid_frame()
    with caplog.at_level(logging.INFO, logger="evreserve_gateway.traffic"):
        log.report()
    (record,) = [r for r in caplog.records if r.getMessage() == "message log counters"]
    line = json.loads(JsonFormatter().format(record))
    directive = line["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "EvReserve/Gateway"
    assert {m["Name"] for m in directive["Metrics"]} >= {"MessageLog.dropped", "MessageLog.invalidFrames"}
    assert line["MessageLog.logged"] == 1 and line["MessageLog.invalidFrames"] == 1 and line["InstanceId"] == "i-1"
    # Counts are per period: the next report starts from zero.
    with caplog.at_level(logging.INFO, logger="evreserve_gateway.traffic"):
        log.report()
    again = json.loads(JsonFormatter().format(caplog.records[-1]))
    assert again["MessageLog.logged"] == 0


@pytest.mark.parametrize("frame", [b'[2,"1","Heartbeat",{}]'])
def test_a_binary_frame_is_logged_as_text(frame):
    log, _ = _log()
    traffic = log.for_charger(1, 1, "A", "ocpp1.6")
    traffic.received(1, "Heartbeat", frame, '[3,"1",{}]')
    log.seal_all()
    assert log.take_sealed()[0].records[0][3] == frame.decode()


async def test_batches_are_still_sealed_while_a_write_hangs(monkeypatch: pytest.MonkeyPatch):
    """A write that does not return neither stops the sealing nor holds the log forever: it times out."""
    monkeypatch.setattr(traffic_module, "WRITE_TIMEOUT_S", 0.3)
    store = MemoryStore()
    store.gate.clear()
    log, clock = _log(store, flush_s=0.01)
    restarts: list[int] = []
    log.writer.restart = lambda: restarts.append(1)  # type: ignore[method-assign]
    a, b = log.for_charger(1, 1, "A", "ocpp1.6"), log.for_charger(2, 1, "B", "ocpp1.6")
    stopping = asyncio.Event()
    runner = asyncio.create_task(log.run(stopping))
    _heartbeat(a, 1)
    clock.now += 1
    await eventually(lambda: store.calls)
    _heartbeat(b, 2)
    clock.now += 1
    await eventually(lambda: log.counters["writeFailures"])
    assert len(log._sealed) == 2  # B's batch was sealed while A's write hung
    assert log.counters["writeFailures"] == 1 and restarts == [1]
    store.gate.set()
    stopping.set()
    await runner
    await log.flush()
    assert {r[0] for batch in store.stored for r in batch.records} == {1, 2}


def test_calls_each_way_and_callerrors_are_counted_even_when_the_log_is_full():
    """The dashboard's message rates and CALLERROR counts do not depend on the log keeping the frames."""
    log, _clock = _log(max_bytes=1)  # nothing fits: every message is dropped from the log
    charger = log.for_charger(1, 7, "A", "ocpp1.6")
    _heartbeat(charger, 1)
    charger.received(2, "Heartbeat", '[2,"2","Heartbeat",{"x":1}]', '[4,"2","FormatViolation","",{}]')
    charger.sent(3, "ReserveNow", '[2,"3","ReserveNow",{}]', '[ 4, "3", "NotSupported", "", {}]')
    charger.sent(4, "CancelReservation", '[2,"4","CancelReservation",{}]', None)
    counted = {
        name: log.counters[name] for name in ("fromCharger", "toCharger", "callErrorsSent", "callErrorsReceived")
    }
    assert counted == {"fromCharger": 2, "toCharger": 2, "callErrorsSent": 1, "callErrorsReceived": 1}
    assert log.counters["dropped"] == 4 and log.counters["logged"] == 0
