"""The gateway's own metrics: CloudWatch embedded metric format, one log line a minute.

What an operator needs to see of a fleet of gateways and cannot get from the API's
metrics: chargers held, connects and disconnects, handshakes refused (by the HTTP status
they got: 401 credentials or certificate, 404 unknown identity, 429 locked out, 503 busy),
commands by outcome, and how long commands took. CloudWatch reads the ``_aws`` block of a
log line into metrics (namespace ``EvReserve/Gateway``, dimension ``InstanceId``, and the
fleet-wide sums without it); template.yaml's dashboard and alarms read these names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Final

from .logs import EMBEDDED_METRICS

NAMESPACE: Final = "EvReserve/Gateway"
#: The names template.yaml's dashboard and alarms use (tests/unit/test_template.py checks them).
CHARGERS: Final = "ConnectedChargers"
CONNECTS: Final = "Connects"
DISCONNECTS: Final = "Disconnects"
REFUSED: Final = "HandshakesRefused"
COMMANDS: Final = "Commands"
COMMAND_LATENCY: Final = "CommandLatency"
#: Command outcomes with a metric of their own (``Commands.<outcome>``).
OUTCOMES: Final = ("result", "call_error", "timeout", "offline", "expired")
#: Refusals with a metric of their own (``HandshakesRefused.<status>``).
REFUSAL_STATUSES: Final = (400, 401, 404, 429, 503)
#: EMF takes at most 100 values of one metric per line; more are summarised by the cap.
_MAX_VALUES = 100

log = logging.getLogger("evreserve_gateway.metrics")


class GatewayMetrics:
    def __init__(self, instance_id: str, chargers: Callable[[], int], interval_s: float = 60.0) -> None:
        self._instance_id = instance_id
        self._chargers = chargers
        self._interval_s = interval_s
        self._counts: Counter[str] = Counter()
        self._latencies_ms: list[float] = []

    def connected(self) -> None:
        self._counts[CONNECTS] += 1

    def disconnected(self) -> None:
        self._counts[DISCONNECTS] += 1

    def refused(self, status: int) -> None:
        self._counts[REFUSED] += 1
        if status in REFUSAL_STATUSES:
            self._counts[f"{REFUSED}.{status}"] += 1

    def command(self, outcome: str, seconds: float) -> None:
        self._counts[COMMANDS] += 1
        self._counts[f"{COMMANDS}.{outcome}"] += 1
        if len(self._latencies_ms) < _MAX_VALUES:
            self._latencies_ms.append(round(seconds * 1000, 1))

    def snapshot(self) -> dict[str, Any]:
        """The EMF record of the interval just ended; the counters start again from zero."""
        counts = {
            CONNECTS: 0,
            DISCONNECTS: 0,
            REFUSED: 0,
            COMMANDS: 0,
            **{f"{REFUSED}.{s}": 0 for s in REFUSAL_STATUSES},
            **{f"{COMMANDS}.{o}": 0 for o in OUTCOMES},
            **self._counts,
        }
        latencies, self._latencies_ms = self._latencies_ms, []
        self._counts = Counter()
        definitions = [{"Name": CHARGERS, "Unit": "Count"}] + [{"Name": name, "Unit": "Count"} for name in counts]
        values: dict[str, Any] = {CHARGERS: self._chargers(), **counts}
        if latencies:
            definitions.append({"Name": COMMAND_LATENCY, "Unit": "Milliseconds"})
            values[COMMAND_LATENCY] = latencies
        return {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [
                    # Per instance, and summed over the fleet (no dimension).
                    {"Namespace": NAMESPACE, "Dimensions": [["InstanceId"], []], "Metrics": definitions}
                ],
            },
            "InstanceId": self._instance_id,
            **values,
        }

    def report(self) -> None:
        log.info("gateway metrics", extra={EMBEDDED_METRICS: self.snapshot()})

    async def run(self, stopping: asyncio.Event) -> None:
        """Report every interval until the gateway stops, then once more."""
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self._interval_s)
            self.report()
