"""What ``make run`` shows of the gateways: their significant events, one readable line each.

The gateways log JSON lines to ``.local/logs/gateway-N.log`` (the whole story stays there).
A developer at the terminal wants to see a charger connect, a command go out and come
back, a login refused; :func:`describe` picks those records and words them, and
:class:`GatewayFeed` follows the files (from their end: a restart does not replay old runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

_REFUSALS = {
    "refused an unknown charger": "refused: unknown identity",
    "refused a charger's credentials": "refused: wrong credentials",
    "refused a charger's certificate": "refused: certificate",
}


def describe(record: dict[str, Any]) -> str | None:
    """A terminal line for a gateway log record worth showing; ``None`` for the rest."""
    message = record.get("message")
    charger = record.get("charger", "?")
    at = str(record.get("timestamp", ""))[11:19]
    if message == "charger connected":
        text = f"{charger} connected ({record.get('protocol')})"
    elif message == "charger disconnected":
        code = record.get("closeCode")
        text = f"{charger} disconnected" + (f" (close code {code})" if code is not None else "")
    elif message == "command completed":
        error = f" {record['errorCode']}" if record.get("errorCode") else ""
        text = f"{charger} {record.get('action')} -> {record.get('outcome')}{error}"
    elif message == "reservation ended":
        text = f"{charger} reservation {record.get('reservationId')} {record.get('state')}"
    elif message == "whole-charger reservation placed":
        text = f"{charger} reservation {record.get('reservationId')} is on port {record.get('port')}"
    elif message in _REFUSALS:
        text = f"{charger} {_REFUSALS[message]}" + (f" ({record['reason']})" if record.get("reason") else "")
    elif message == "upgraded a charger's password hash to Argon2id":
        text = f"{charger} password hash upgraded to Argon2id"
    else:
        return None
    return f"{at} gateway  {text}"


class GatewayFeed:
    """Follows the gateways' log files and hands each described event to ``show``."""

    def __init__(self, paths: list[Path], show: Callable[[str], None], interval_s: float = 0.3) -> None:
        self._paths = paths
        self._show = show
        self._interval_s = interval_s
        self._offsets = {path: path.stat().st_size if path.exists() else 0 for path in paths}

    def poll(self) -> None:
        for path in self._paths:
            if not path.exists():
                continue
            if path.stat().st_size < self._offsets[path]:
                self._offsets[path] = 0  # the file was started afresh
            with path.open("rb") as source:
                source.seek(self._offsets[path])
                data = source.read()
            complete = data.rfind(b"\n") + 1  # a line still being written waits for the next poll
            self._offsets[path] += complete
            for line in data[:complete].splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                text = describe(record) if isinstance(record, dict) else None
                if text is not None:
                    self._show(text)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.poll()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval_s)
        self.poll()
