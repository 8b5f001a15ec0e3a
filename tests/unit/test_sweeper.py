"""The expiry sweep on in-memory DynamoDB (moto) with the template's reservations table."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from fixtures.functions import load_function
from fixtures.moto_env import mocked_aws

from devstack.template import create_tables, load_template
from evreserve.models import Reservation, ReservationState
from evreserve.storage.codec import to_item
from evreserve.storage.items import reservation_item
from evreserve.storage.reservations import ReservationStore

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[ReservationStore]:
    with mocked_aws(monkeypatch):
        client = boto3.client("dynamodb", region_name="us-east-1")
        tables = create_tables(client, "unit", load_template())
        yield ReservationStore(client, tables["RESERVATIONS_TABLE"])


def put(
    store: ReservationStore, rid: int, state: ReservationState, expiry: datetime, answer_by: datetime | None = None
) -> Reservation:
    reservation = Reservation(
        account_id=7,
        reservation_id=rid,
        charger_id=12,
        port_id=34,
        port_number=1,
        id_tag="RFID001",
        expiry_date=expiry,
        state=state,
        created_at=T0 - timedelta(hours=1),
        updated_at=T0 - timedelta(hours=1),
        command_id=f"c{rid}",
        answer_by=answer_by,
    )
    store._client.put_item(TableName=store.table, Item=to_item(reservation_item(reservation)))
    return reservation


class Clock:
    def __init__(self) -> None:
        self.now = T0
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)


def test_the_sweep_ends_accepted_reservations_at_their_expiry_and_nothing_else(store: ReservationStore):
    """Accepted and due, or due within the minute (waited for): Expired at the expiryDate. The rest stays."""
    sweeper: Any = load_function("sweeper")
    put(store, 1, ReservationState.ACCEPTED, T0 - timedelta(seconds=5))
    put(store, 2, ReservationState.ACCEPTED, T0 + timedelta(seconds=30))
    put(store, 3, ReservationState.ACCEPTED, T0 + timedelta(minutes=5))
    put(store, 4, ReservationState.PENDING, T0 - timedelta(seconds=5))
    put(store, 5, ReservationState.CANCELLED, T0 - timedelta(seconds=5))
    # Pending past its answer-by time, its outcome never stored: stored Failed as readers see it.
    put(store, 6, ReservationState.PENDING, T0 - timedelta(seconds=2), answer_by=T0 - timedelta(hours=1))
    clock = Clock()
    assert sweeper.sweep(store, now=clock, sleep=clock.sleep) == 3
    assert clock.slept == [30.0]
    states = {rid: store.get(7, rid) for rid in range(1, 7)}
    assert {rid: r.state for rid, r in states.items() if r} == {
        1: ReservationState.EXPIRED,
        2: ReservationState.EXPIRED,
        3: ReservationState.ACCEPTED,
        4: ReservationState.PENDING,
        5: ReservationState.CANCELLED,
        6: ReservationState.FAILED,
    }
    assert states[6] is not None and states[6].failure_code == "CHARGER_TIMEOUT"
    assert states[2] is not None and states[2].ended_at == T0 + timedelta(seconds=30)
    # Ended ones left the index; a Pending one stays until its answer is recorded.
    assert [r.reservation_id for r in store.expiring(T0 + timedelta(minutes=10))] == [4, 3]


def test_a_run_stops_at_its_deadline_and_leaves_the_rest_to_the_next(store: ReservationStore):
    sweeper: Any = load_function("sweeper")
    for rid in range(1, 4):
        put(store, rid, ReservationState.ACCEPTED, T0 + timedelta(seconds=10 * rid))
    clock = Clock()
    assert sweeper.sweep(store, now=clock, sleep=clock.sleep, deadline=T0 + timedelta(seconds=25)) == 2
    assert [r.reservation_id for r in store.expiring(T0 + timedelta(minutes=1))] == [3]
