"""Reserve and cancel: the request's rate count rides the command's transaction (evreserve.storage.ratelimit).

On the unit harness (moto), with a limit of one request a minute per key.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from api_harness import PORT_ID, future, invoke, load_event, seed, start_stack
from fixtures.functions import load_function

from evreserve.models import CommandOutcome, OutcomeKind
from evreserve_lambda import app as glue


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch):
    for stack in start_stack(monkeypatch):
        monkeypatch.setenv("RATE_LIMIT_PER_MINUTE", "1")
        glue.use_services(stack.services)
        yield stack
    glue.use_services(None)


def _calls(stack: Any) -> Counter[str]:
    seen: Counter[str] = Counter()
    stack.dynamodb.meta.events.register("before-call.dynamodb.*", lambda model, **_: seen.update([model.name]))
    return seen


def _body(reservation_id: int) -> dict[str, Any]:
    return {"portId": PORT_ID, "expiryDate": future(), "idTag": "RFID001", "reservationId": reservation_id}


def _fresh_window() -> None:
    # The window is the clock's minute: start early in one so that the test falls in it.
    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)


def test_a_reservation_within_the_limit_makes_no_request_for_its_count(stack):
    """The count is an item of the command's transaction: no request touches the rate table alone."""
    seed(stack)
    fn = load_function("reservations")
    _fresh_window()
    tables: list[set[str]] = []

    def tables_of(params: dict[str, Any], **_: Any) -> None:
        items = params.get("TransactItems") or [{"Update": params}]
        tables.append({next(iter(item.values())).get("TableName", "") for item in items})

    stack.dynamodb.meta.events.register("before-parameter-build.dynamodb.TransactWriteItems", tables_of)
    stack.dynamodb.meta.events.register("before-parameter-build.dynamodb.UpdateItem", tables_of)
    status, _ = invoke(fn.handler, load_event("reserve.json", body=_body(1)))
    assert status == 200
    with_count = [names for names in tables if any("RateLimit" in name for name in names)]
    assert len(with_count) == 1 and any("Commands" in name for name in with_count[0]), tables


def test_a_request_refused_in_its_transaction_is_not_counted_again(stack):
    """Over the limit: 429 after the one cancelled transaction (the charger is remembered from the first
    request, and its check in that transaction passed); the refused request is not counted a second time
    afterwards (it would eat the next window's allowance across a minute boundary)."""
    seed(stack)
    fn = load_function("reservations")
    _fresh_window()
    assert invoke(fn.handler, load_event("reserve.json", body=_body(1)))[0] == 200
    seen = _calls(stack)
    status, answer = invoke(fn.handler, load_event("reserve.json", body=_body(2)))
    assert (status, answer["code"]) == (429, "RATE_LIMITED")
    assert seen == Counter({"TransactWriteItems": 1})


def test_an_over_limit_retry_of_a_command_on_its_way_is_refused_before_it_waits(stack):
    """A retry that finds its command without an outcome would wait for it up to the deadline: over
    the limit, it is refused at once, and the command's record is left as it was."""
    seed(stack)
    fn = load_function("reservations")
    channel = stack.services.reservations._channel
    _fresh_window()
    # The first request: created and sent, its waiter stopped at once (the command stays on its way).
    real_wait = channel.wait
    channel.wait = lambda command: CommandOutcome(
        kind=OutcomeKind.TIMEOUT, completed_at=datetime.now(UTC), completed_by="test"
    )
    stack.gateway.send_message = lambda **_: {"MessageId": "1"}  # the command never arrives
    same = _body(3)
    invoke(fn.handler, load_event("reserve.json", body=same))
    channel.wait = real_wait
    slept = [0.0]
    start = datetime.now(UTC)
    channel._clock = lambda: start + timedelta(seconds=slept[0])
    channel._sleep = lambda s: slept.__setitem__(0, slept[0] + s)
    status, answer = invoke(fn.handler, load_event("reserve.json", body=same))
    reservation = stack.services.reservations._reservations.get(1, 3)
    command = channel._ledger.get(reservation.command_id)
    assert (status, answer["code"]) == (429, "RATE_LIMITED")
    assert slept[0] == 0.0
    assert command.outcome is None
