"""Many simulated chargers in one process."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, Self

from simulator.charger import SimulatedCharger


def fleet_ids(first: str, count: int) -> list[str]:
    """`count` identities counting up from `first`: CP-1 -> CP-1..CP-N, CP-007 -> CP-007..; CP -> CP-1..CP-N."""
    if count < 1:
        raise ValueError("count must be at least 1")
    match = re.fullmatch(r"(.*?)(\d+)", first)
    if match is None:
        return [first] if count == 1 else [f"{first}-{n}" for n in range(1, count + 1)]
    prefix, digits = match.groups()
    start = int(digits)
    return [f"{prefix}{n:0{len(digits)}d}" for n in range(start, start + count)]


class Fleet:
    """Starts, stops and looks up a set of chargers that share an event loop."""

    def __init__(self, chargers: Iterable[SimulatedCharger]) -> None:
        self._chargers: dict[str, SimulatedCharger] = {}
        for charger in chargers:
            if charger.ocpp_id in self._chargers:
                raise ValueError(f"duplicate charger id {charger.ocpp_id}")
            self._chargers[charger.ocpp_id] = charger

    @classmethod
    def build(cls, ids: Iterable[str], gateway_url: str, **options: Any) -> Fleet:
        """One SimulatedCharger per id, all with the same `options` (password, version, ports, ...)."""
        return cls(SimulatedCharger(ocpp_id, gateway_url, **options) for ocpp_id in ids)

    def __getitem__(self, ocpp_id: str) -> SimulatedCharger:
        return self._chargers[ocpp_id]

    def __iter__(self) -> Iterator[SimulatedCharger]:
        return iter(self._chargers.values())

    def __len__(self) -> int:
        return len(self._chargers)

    async def start(self) -> None:
        for charger in self:
            await charger.start()

    async def stop(self) -> None:
        await asyncio.gather(*(charger.stop() for charger in self))

    async def wait_connected(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until every charger is online; TimeoutError names one that is not."""
        await asyncio.gather(*(charger.wait_connected(timeout) for charger in self))

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
