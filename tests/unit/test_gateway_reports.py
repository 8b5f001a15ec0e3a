"""A charger's StatusNotifications reach the registry one write at a time per port, the latest winning."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, datetime, timedelta

from evreserve.models import OcppStatus
from evreserve_gateway.background import Background
from evreserve_gateway.offload import Offload
from evreserve_gateway.reports import ChargerReports
from evreserve_gateway.tokens import TokenCache

T0 = datetime(2026, 11, 23, 10, tzinfo=UTC)


def status(name: str, second: int = 0, **fields) -> OcppStatus:
    return OcppStatus(status=name, timestamp=T0 + timedelta(seconds=second), **fields)


class SlowRegistry:
    """Stores statuses; the first write waits until the test lets it go."""

    def __init__(self) -> None:
        self.written: list[tuple[int, str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_next = False

    def record_port_status(self, charger_id: int, port_number: int, report: OcppStatus) -> None:
        self.entered.set()
        self.release.wait(5)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("table unreachable")
        self.written.append((port_number, report.status))


class Reservations:
    def __init__(self) -> None:
        self.lookups = 0

    def active_for_charger(self, charger_id: int) -> list:
        self.lookups += 1
        return []


class NoTokens:
    """No access IDs and no accounts: every token unknown, the default policy."""

    def by_tag(self, account_id: int, id_tag: str, *, consistent: bool = True) -> None:
        return None

    def get_account(self, account_id: int) -> None:
        return None


def _reports(registry: SlowRegistry, reservations: Reservations, background: Background, io: Offload):
    logger = logging.LoggerAdapter(logging.getLogger("test"), {})
    tokens = TokenCache(NoTokens(), NoTokens(), io, ttl_s=30, max_entries=10)  # type: ignore[arg-type]
    return ChargerReports(7, 1, registry, reservations, io, background, logger, tokens)  # type: ignore[arg-type]


async def _settle(background: Background) -> None:
    for _ in range(50):
        if not len(background):
            return
        await background.join(5)


async def test_a_burst_costs_the_first_write_and_the_last():
    """GIVEN a write in flight WHEN four more reports arrive THEN only the latest of them is written next."""
    registry, background, io = SlowRegistry(), Background(), Offload(2, "t")
    reports = _reports(registry, Reservations(), background, io)
    reports.record_port_status(1, status("Available"))
    await asyncio.to_thread(registry.entered.wait, 5)
    for second, name in enumerate(["Preparing", "Charging", "SuspendedEV", "Charging"], start=1):
        reports.record_port_status(1, status(name, second))
    registry.release.set()
    await _settle(background)
    assert registry.written == [(1, "Available"), (1, "Charging")]
    io.shutdown()


async def test_a_repeat_of_the_stored_status_is_not_written_again():
    """The same status, error and info again, only later, leaves the stored report alone."""
    registry, background, io = SlowRegistry(), Background(), Offload(2, "t")
    registry.release.set()
    reports = _reports(registry, Reservations(), background, io)
    reports.record_port_status(1, status("Available", 0))
    await _settle(background)
    reports.record_port_status(1, status("Available", 60))
    reports.record_port_status(2, status("Available", 60))  # another port: its own first report
    await _settle(background)
    reports.record_port_status(1, status("Available", 120, info="door open"))  # not a repeat: info changed
    await _settle(background)
    assert registry.written == [(1, "Available"), (2, "Available"), (1, "Available")]
    io.shutdown()


async def test_a_status_that_ends_reservations_is_never_replaced():
    """GIVEN a write in flight WHEN Faulted then Available arrive THEN Faulted is written and ends reservations."""
    registry, reservations, background, io = SlowRegistry(), Reservations(), Background(), Offload(2, "t")
    reports = _reports(registry, reservations, background, io)
    reports.record_port_status(1, status("Charging"))
    await asyncio.to_thread(registry.entered.wait, 5)
    reports.record_port_status(1, status("Faulted", 1))
    reports.record_port_status(1, status("Available", 2))
    reports.record_port_status(1, status("Preparing", 3))  # replaces Available, not Faulted
    registry.release.set()
    await _settle(background)
    assert registry.written == [(1, "Charging"), (1, "Faulted"), (1, "Preparing")]
    assert reservations.lookups == 1
    io.shutdown()


async def test_a_failed_write_does_not_stop_the_next():
    """A write that fails is logged and dropped; the report after it is still written."""
    registry, background, io = SlowRegistry(), Background(), Offload(2, "t")
    registry.fail_next = True
    reports = _reports(registry, Reservations(), background, io)
    reports.record_port_status(1, status("Available"))
    await asyncio.to_thread(registry.entered.wait, 5)
    reports.record_port_status(1, status("Charging", 1))
    registry.release.set()
    await _settle(background)
    assert registry.written == [(1, "Charging")]
    io.shutdown()


async def test_a_report_that_failed_to_store_is_not_taken_for_stored():
    """After a failed write, the same status again is written: it is not a repeat of anything stored."""
    registry, background, io = SlowRegistry(), Background(), Offload(2, "t")
    registry.fail_next = True
    registry.release.set()
    reports = _reports(registry, Reservations(), background, io)
    reports.record_port_status(1, status("Available"))
    await _settle(background)
    reports.record_port_status(1, status("Available", 1))
    await _settle(background)
    assert registry.written == [(1, "Available")]
    io.shutdown()


async def test_reports_that_arrive_before_the_write_starts_are_one_write():
    """Reports queued before the first write begins collapse into the latest."""
    registry, background, io = SlowRegistry(), Background(), Offload(2, "t")
    registry.release.set()
    reports = _reports(registry, Reservations(), background, io)
    reports.record_port_status(1, status("Available"))
    reports.record_port_status(1, status("Reserved", 1))
    await _settle(background)
    assert registry.written == [(1, "Reserved")]
    io.shutdown()


async def test_each_connector_of_an_evse_has_its_own_writes_and_repeats():
    """2.0.1: while connector 1's write is in flight, connector 2's report waits beside (not behind) connector
    1's next one, so neither replaces the other; a repeat is judged per connector."""
    registry, background, io = SlowRegistry(), Background(), Offload(2, "t")
    reports = _reports(registry, Reservations(), background, io)
    reports.record_port_status(1, status("Occupied", connector_id=1))
    await asyncio.to_thread(registry.entered.wait, 5)
    reports.record_port_status(1, status("Preparing", 1, connector_id=2))
    reports.record_port_status(1, status("Available", 2, connector_id=1))
    registry.release.set()
    await _settle(background)
    assert sorted(registry.written) == sorted([(1, "Occupied"), (1, "Preparing"), (1, "Available")])
    reports.record_port_status(1, status("Preparing", 3, connector_id=2))  # connector 2's repeat
    reports.record_port_status(1, status("Preparing", 3, connector_id=1))  # connector 1's change
    await _settle(background)
    assert len(registry.written) == 4 and registry.written[-1] == (1, "Preparing")
    io.shutdown()
