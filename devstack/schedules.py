"""EventBridge schedules, locally: a function with a ``Type: Schedule`` event is invoked on its rate."""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("devstack.schedules")

_RATE = re.compile(r"rate\((\d+) (second|seconds|minute|minutes|hour|hours|day|days)\)")
_UNIT_S = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class ScheduleSource:
    function_id: str
    period_s: float


def schedule_source(function_id: str, props: dict[str, Any]) -> ScheduleSource | None:
    """A ``rate(...)`` schedule; None for cron expressions or a disabled one (not run locally)."""
    match = _RATE.fullmatch(str(props.get("Schedule", "")).strip())
    if match is None or props.get("Enabled") is False:
        return None
    return ScheduleSource(function_id, int(match.group(1)) * _UNIT_S[match.group(2).rstrip("s")])


def scheduled_event() -> dict[str, Any]:
    """The event EventBridge sends a scheduled function."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "resources": [],
        "detail": {},
    }


class Scheduler:
    """Invokes ``invoke(event)`` every ``period_s``, first one period after the start, on a thread."""

    def __init__(self, source: ScheduleSource, invoke: Callable[[dict[str, Any]], Any]) -> None:
        self.source = source
        self._invoke = invoke
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"schedule-{source.function_id}", daemon=True)
        self.runs = 0

    def start(self) -> Scheduler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        # A fixed rate, as EventBridge's: a run that takes most of its period (the expiry
        # sweep waits) does not push the next one back.
        due = time.monotonic() + self.source.period_s
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            due += self.source.period_s
            try:
                self._invoke(scheduled_event())
                self.runs += 1
            except Exception:
                log.exception("scheduled %s failed", self.source.function_id)
