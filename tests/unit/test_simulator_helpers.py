"""Small pure helpers of the simulator: fleet ids and frame summaries."""

import pytest

from simulator.fleet import fleet_ids
from simulator.frames import summarize


@pytest.mark.parametrize(
    ("first", "count", "ids"),
    [
        ("CP-1", 3, ["CP-1", "CP-2", "CP-3"]),
        ("CP-009", 2, ["CP-009", "CP-010"]),
        ("CP", 2, ["CP-1", "CP-2"]),
        ("CP", 1, ["CP"]),
    ],
)
def test_fleet_ids_count_up_from_the_first(first, count, ids):
    """--count N numbers chargers from the given id, keeping its zero padding."""
    assert fleet_ids(first, count) == ids


def test_summary_names_the_action_of_a_reply():
    """A CALLRESULT summary carries the action of the CALL it answers, with its status."""
    actions: dict[str, str] = {}
    assert summarize('[2,"a1","ReserveNow",{"connectorId":1,"reservationId":7}]', actions) == (
        "ReserveNow connectorId=1 reservationId=7"
    )
    assert summarize('[3,"a1",{"status":"Accepted"}]', actions) == "ReserveNow.conf status=Accepted"
    assert actions == {}


def test_summary_of_a_callerror_shows_its_code():
    """A CALLERROR summary shows its code and description."""
    actions = {"b2": "CancelReservation"}
    text = summarize('[4,"b2","NotSupported","no reservations",{}]', actions)
    assert text == "CancelReservation CALLERROR NotSupported no reservations"
