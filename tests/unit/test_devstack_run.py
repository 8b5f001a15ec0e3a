"""What `make run` shows a person: the gateways' events in words, and a taken port named before anything starts."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

from devstack import HOST
from devstack.__main__ import in_use, serve
from devstack.gateway_feed import GatewayFeed, describe

T = "2026-12-07 00:08:19,211+0000"


@pytest.mark.parametrize(
    ("record", "line"),
    [
        ({"message": "charger connected", "charger": "CP-1", "protocol": "1.6"}, "CP-1 connected (1.6)"),
        (
            {"message": "charger disconnected", "charger": "CP-1", "closeCode": 1006},
            "CP-1 disconnected (close code 1006)",
        ),
        (
            {"message": "command completed", "charger": "CP-1", "action": "ReserveNow", "outcome": "result"},
            "CP-1 ReserveNow -> result",
        ),
        (
            {
                "message": "command completed",
                "charger": "CP-1",
                "action": "ReserveNow",
                "outcome": "timeout",
                "errorCode": None,
            },
            "CP-1 ReserveNow -> timeout",
        ),
        (
            {"message": "reservation ended", "charger": "CP-1", "reservationId": 7, "state": "Used"},
            "CP-1 reservation 7 Used",
        ),
        ({"message": "refused a charger's credentials", "charger": "CP-9"}, "CP-9 refused: wrong credentials"),
        ({"message": "heartbeat", "charger": "CP-1"}, None),
        ({"message": "message log counters"}, None),
    ],
)
def test_significant_gateway_events_read_as_one_line(record, line):
    described = describe({"timestamp": T, **record})
    assert described == (f"00:08:19 gateway  {line}" if line is not None else None)


def test_the_feed_follows_new_complete_lines_only(tmp_path: Path):
    log = tmp_path / "gateway-1.log"
    log.write_text(
        json.dumps({"timestamp": T, "message": "charger connected", "charger": "OLD", "protocol": "1.6"}) + "\n"
    )
    shown: list[str] = []
    feed = GatewayFeed([log], shown.append)
    with log.open("a") as out:
        out.write(
            json.dumps({"timestamp": T, "message": "charger connected", "charger": "CP-1", "protocol": "2.0.1"}) + "\n"
        )
        out.write("not json\n")
        out.write('{"timestamp": "' + T + '", "message": "charger disc')  # still being written
    feed.poll()
    assert shown == ["00:08:19 gateway  CP-1 connected (2.0.1)"]
    with log.open("a") as out:
        out.write('onnected", "charger": "CP-1"}\n')
    feed.poll()
    assert shown[-1] == "00:08:19 gateway  CP-1 disconnected"
    log.write_text("")  # started afresh
    feed.poll()
    assert len(shown) == 2


def test_a_taken_port_stops_make_run_before_anything_starts(monkeypatch: pytest.MonkeyPatch):
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert in_use(port)
        monkeypatch.setenv("API_PORT", str(port))
        with pytest.raises(SystemExit, match=f"API_PORT {port}.* is in use"):
            asyncio.run(serve())
