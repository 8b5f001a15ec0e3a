"""Parsing of the simulator's command line and interactive commands."""

import pytest

from simulator.behaviour import NoReservationSupport
from simulator.cli import Command, behaviour_from, build_parser, parse_command
from simulator.state import ReserveStatus


def test_flags_become_a_behaviour():
    """Every misbehaviour flag lands in the Behaviour the chargers get."""
    args = build_parser().parse_args(
        [
            "--url",
            "ws://x/ocpp",
            "--reserve-answer",
            "Occupied",
            "--no-reservations",
            "notsupported",
            "--delay",
            "2.5",
            "--never-answer",
            "--drop-on-reserve",
            "--connector-zero",
            "--non-evse-specific",
        ]
    )
    b = behaviour_from(args)
    assert b.reserve_answer is ReserveStatus.OCCUPIED
    assert b.no_reservations is NoReservationSupport.NOT_SUPPORTED
    assert (b.answer_delay, b.never_answer, b.drop_on_reserve) == (2.5, True, True)
    assert b.reserve_connector_zero and b.non_evse_specific


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("start CP-1 1 RFID001", Command("start", "CP-1", 1, "RFID001")),
        ("stop CP-1 2", Command("stop", "CP-1", 2)),
        ("status CP-1 1 faulted", Command("status", "CP-1", 1, "Faulted")),
        ("remove CP-1 1001", Command("remove", "CP-1", arg="1001")),
        ("  QUIT ", Command("quit")),
        ("", None),
    ],
)
def test_interactive_commands_parse(line, command):
    """The documented stdin commands parse, case-insensitively for names and statuses."""
    assert parse_command(line) == command


@pytest.mark.parametrize("line", ["start CP-1 x RFID", "status CP-1 1 Broken", "stop CP-1", "fly CP-1"])
def test_bad_interactive_commands_say_why(line):
    """A malformed command is refused with a message rather than crashing the simulator."""
    with pytest.raises(ValueError, match=r"\w"):
        parse_command(line)
