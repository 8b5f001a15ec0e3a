"""What a charger's frame costs the gateway's session alone: CPU µs per frame, in one process.

    .venv/bin/python benchmarks/session_cost.py [--smoke] [--frames 30000] [--rounds 5]

The realistic mix of ``gateway_throughput.py`` (per 10 frames: 6 MeterValues, 3
Heartbeat, 1 StatusNotification, OCPP 1.6) through ``OcppSession.take_frame`` and the
answer's send, to a socket that discards what it is given: no WebSocket, no event-loop
wake-ups, no storage. Side by side, alternating round by round: the validators as
shipped (jsonschema-rs says "valid?" first, fastjsonschema judges the rest) and
fastjsonschema alone (as before 2026-12-08). The message log is off (``traffic=None``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

import fastjsonschema
from common import Report

from evreserve.access_ids import TokenStatus, Verdict
from evreserve.models import OcppVersion
from evreserve_gateway.protocol import new_session, schemas

CLOCK = "2026-12-08T02:00:00.000Z"


class _Sink:
    """A charger socket that takes every answer at once."""

    async def send(self, message: str) -> None:
        return None


class _Reports:
    """Storage that stores nothing: the mix repeats one status, which the gateway stores once anyway."""

    def record_boot(self, boot: Any) -> None: ...

    def record_port_status(self, port_number: int, status: Any) -> None: ...

    def record_reservation_used(self, reservation_id: int, port_number: int | None = None) -> None: ...

    def record_reservation_status_update(self, reservation_id: int, update_status: str) -> None: ...

    def expect_placement(self) -> None: ...

    async def authorize(self, id_tag: str) -> Verdict:
        return Verdict(TokenStatus.ACCEPTED, None)

    def new_transaction_id(self) -> int:
        return 1


def _frame(n: int) -> str:
    kind = n % 10
    if kind in (1, 4, 8):
        return f'[2,"h{n}","Heartbeat",{{}}]'
    if kind == 6:
        return (
            f'[2,"s{n}","StatusNotification",{{"connectorId":1,"errorCode":"NoError",'
            f'"status":"Available","timestamp":"{CLOCK}"}}]'
        )
    return (
        f'[2,"m{n}","MeterValues",{{"connectorId":1,"meterValue":[{{"timestamp":"{CLOCK}",'
        f'"sampledValue":[{{"value":"{n}","measurand":"Energy.Active.Import.Register","unit":"Wh"}},'
        f'{{"value":"7360","measurand":"Power.Active.Import","unit":"W"}}]}}]}}]'
    )


def _fastjsonschema_alone(version: OcppVersion, action: str, *, answer: bool) -> Callable[[Any], Any]:
    schema = json.loads(schemas.schema_path(version, action, answer=answer).read_text(encoding="utf-8-sig"))
    schema["$schema"] = schemas._DRAFT4
    return fastjsonschema.compile(schema, use_default=False, use_formats=False)


def _round(frames: list[str]) -> float:
    """CPU µs per frame of one pass over ``frames`` through a fresh session."""

    async def run() -> float:
        session = new_session(
            OcppVersion.V16, "CP-1", _Sink(), _Reports(), logging.LoggerAdapter(logging.getLogger("bench"), {}), 60
        )
        started = time.process_time()
        for frame in frames:
            pending = session.take_frame(frame)
            if pending is not None:
                with contextlib.suppress(StopIteration):  # the sink never waits: the send ends at once
                    pending.send(None)
        return (time.process_time() - started) / len(frames) * 1e6

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few frames: checks the script, not the figures")
    parser.add_argument("--frames", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    frames = [_frame(n) for n in range(200 if args.smoke else args.frames)]
    rounds = 1 if args.smoke else args.rounds
    shipped = schemas._compile
    variants = {"as shipped": shipped, "fastjsonschema alone": _fastjsonschema_alone}
    per_frame: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, compile_ in variants.items():
            schemas._compile = compile_  # type: ignore[assignment]
            schemas.request_validator.cache_clear()
            _round(frames[:500])  # warm: compile the validators, fill caches
            per_frame[name].append(round(_round(frames), 2))
    schemas._compile = shipped
    schemas.request_validator.cache_clear()
    report = Report("session_cost", smoke=args.smoke)
    for name, figures in per_frame.items():
        report.add(validators=name, frames=len(frames), rounds=rounds, us_per_frame_median=statistics.median(figures),
                   us_per_frame_each=figures)  # fmt: skip
    report.ratios["as shipped / fastjsonschema alone, median µs per frame"] = round(
        statistics.median(per_frame["as shipped"]) / statistics.median(per_frame["fastjsonschema alone"]), 3
    )
    report.notes.append("realistic mix: 6 MeterValues (two samples), 3 Heartbeat, 1 StatusNotification per 10 frames")
    report.emit()


if __name__ == "__main__":
    main()
