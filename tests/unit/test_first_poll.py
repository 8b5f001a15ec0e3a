"""The waiting function's first read is learnt: it settles where most outcomes are found at once, never far off."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from evreserve import channel as channel_module
from evreserve.channel import (
    FIRST_POLL_BOUNDS_S,
    FIRST_POLL_HITS,
    FIRST_POLL_WINDOW_S,
    POLL_SCHEDULE_S,
    CommandChannel,
    FirstPoll,
)
from evreserve.errors import DependencyUnavailable
from evreserve.models import Command, CommandAction, CommandOutcome, OcppVersion, OutcomeKind
from evreserve.settings import ChannelSettings

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def landing_times(n: int, low: float = 0.006, high: float = 0.012) -> list[float]:
    """Outcomes landing between ``low`` and ``high`` s after the send, evenly spread (a fixed sequence)."""
    return [low + (high - low) * ((i * 7919) % 1000) / 1000 for i in range(n)]


def found_after(lands: float, pause: float) -> float:
    """When the waiting function finds an outcome that lands at ``lands``: 0 at the first read, else
    the seconds after it, reading on ``POLL_SCHEDULE_S``'s later pauses."""
    if lands <= pause:
        return 0.0
    later = [*POLL_SCHEDULE_S[1:]]
    waited = 0.0
    while pause + waited < lands:
        waited += later.pop(0) if later else POLL_SCHEDULE_S[-1]
    return waited


def run(first: FirstPoll, landings: list[float]) -> float:
    """Feed the landings; the share of first reads that missed over the last half."""
    misses = 0
    for i, lands in enumerate(landings):
        after = found_after(lands, first.pause_s)
        first.learn(after)
        if i >= len(landings) // 2:
            misses += after > 0
    return misses / (len(landings) - len(landings) // 2)


def test_the_first_pause_settles_at_the_quantile_of_the_landing_times() -> None:
    """From the cold 20 ms it comes down to where ~85% of outcomes are stored by the first read."""
    first = FirstPoll(0.02)
    missed = run(first, landing_times(4000))
    assert first.pause_s == pytest.approx(0.006 + 0.006 * FIRST_POLL_HITS, rel=0.25)
    assert 0.08 <= missed <= 0.22


def test_it_never_reads_later_than_a_cold_instance() -> None:
    """Outcomes at 55-65 ms (a slower storage or queue, or load): the first read stays at the cold 20 ms and
    the dense later reads find the outcome, rather than one read late at their 85th percentile."""
    first = FirstPoll(0.02)
    run(first, landing_times(2000, 0.055, 0.065))
    assert first.pause_s == FIRST_POLL_BOUNDS_S[1] == POLL_SCHEDULE_S[0]


def test_slow_chargers_in_the_fleet_do_not_drag_it_into_their_range() -> None:
    """A third of the chargers answer in 0.3-1.5 s (mobile networks): the pause stays at the fast ones'
    85th percentile, so their answers are not delayed to the slow ones' pace."""
    fast, slow = landing_times(3000), landing_times(3000, 0.3, 1.5)
    mixed = [slow[i] if i % 3 == 0 else fast[i] for i in range(3000)]
    first = FirstPoll(0.02)
    run(first, mixed)
    assert first.pause_s == pytest.approx(0.006 + 0.006 * FIRST_POLL_HITS, rel=0.25)


def test_after_a_slow_spell_it_comes_back_within_dozens_of_requests() -> None:
    """A burst of load pushed it to 20 ms; back to outcomes at 6-12 ms, it returns near them in ~40 requests."""
    first = FirstPoll(0.02)
    run(first, landing_times(40))
    assert first.pause_s < 0.013


def test_the_pause_stays_within_its_bounds() -> None:
    low, high = FIRST_POLL_BOUNDS_S
    always, never = FirstPoll(0.02), FirstPoll(0.02)
    for _ in range(10_000):
        always.learn(0.0)
        never.learn(POLL_SCHEDULE_S[1])
    assert (always.pause_s, never.pause_s) == (low, high)


def test_an_outcome_long_after_the_first_read_or_none_teaches_nothing() -> None:
    """A slow charger's answer, or a timeout, leaves the pause where it was."""
    first = FirstPoll(0.01)
    first.learn(FIRST_POLL_WINDOW_S + 0.001)
    first.learn(None)
    assert first.pause_s == 0.01
    first.learn(FIRST_POLL_WINDOW_S)
    assert first.pause_s == pytest.approx(0.01 * math.exp(FIRST_POLL_HITS * channel_module.FIRST_POLL_STEP))


# -- the waiting function -------------------------------------------------------------------


def command() -> Command:
    return Command(
        command_id="c",
        account_id=1,
        charger_id=2,
        ocpp_id="CP",
        ocpp_version=OcppVersion.V16,
        action=CommandAction.RESERVE_NOW,
        payload={},
        instance_id="i",
        session_id="s",
        created_at=NOW,
        deadline=NOW + timedelta(seconds=20),
        request_hash="h",
    )


class Ledger:
    """Answers the reads in order: ``None`` = not yet, an exception = a failed read, else the outcome's command."""

    def __init__(self, *reads: Any) -> None:
        self.reads = list(reads)

    def get(self, _command_id: str) -> Command | None:
        read = self.reads.pop(0)
        if isinstance(read, Exception):
            raise read
        return read  # type: ignore[no-any-return]


def answered() -> Command:
    outcome = CommandOutcome(
        kind=OutcomeKind.RESULT, payload={"status": "Accepted"}, completed_at=NOW, completed_by="i"
    )
    return command().model_copy(update={"outcome": outcome})


def waiting(*reads: Any) -> tuple[CommandChannel, list[float]]:
    slept: list[float] = []
    channel = CommandChannel(
        Ledger(*reads),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        ChannelSettings(),
        clock=lambda: NOW,
        sleep=slept.append,
    )
    return channel, slept


def test_a_hit_shortens_the_next_wait_and_a_miss_reads_again_5_ms_later() -> None:
    channel, slept = waiting(answered(), None, None, answered())
    start = channel.first_poll.pause_s
    assert channel.wait(command()).kind is OutcomeKind.RESULT
    shorter = channel.first_poll.pause_s
    assert shorter < start
    channel.wait(command())
    assert slept == [start, shorter, POLL_SCHEDULE_S[1], POLL_SCHEDULE_S[2]]
    assert channel.first_poll.pause_s > shorter


def test_a_command_queued_by_another_request_teaches_nothing() -> None:
    """A retry that found its command already on its way waits the learnt pause but learns nothing from it."""
    channel, slept = waiting(answered(), None, answered())
    start = channel.first_poll.pause_s
    channel.wait(command(), sent_now=False)
    channel.wait(command(), sent_now=False)
    assert channel.first_poll.pause_s == start
    assert slept[0] == start


def test_an_outcome_found_past_the_window_teaches_nothing() -> None:
    """Missed at first and found only after a quarter of a second: a slow charger, not a late pause."""
    channel, slept = waiting(*([None] * 8), answered())
    start = channel.first_poll.pause_s
    channel.wait(command())
    assert sum(slept[1:]) > FIRST_POLL_WINDOW_S
    assert channel.first_poll.pause_s == start


def test_a_failed_first_read_teaches_nothing() -> None:
    channel, _ = waiting(DependencyUnavailable("hiccup"), answered())
    start = channel.first_poll.pause_s
    assert channel.wait(command()).kind is OutcomeKind.RESULT
    assert channel.first_poll.pause_s == start


def test_learning_switched_off_keeps_the_fixed_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(channel_module, "LEARN_FIRST_POLL", False)
    channel, slept = waiting(answered(), answered())
    channel.first_poll.pause_s = 0.007
    channel.wait(command())
    channel.wait(command())
    assert slept == [POLL_SCHEDULE_S[0], POLL_SCHEDULE_S[0]]
    assert channel.first_poll.pause_s == 0.007
