"""The expiry sweep: accepted reservations whose expiryDate passes are stored Expired, at that moment.

Run every minute (template.yaml's schedule). Each run takes the active reservations
expiring before the next run (the sparse index ``activeByExpiry``) and ends each at its
expiryDate, waiting for it where it is still ahead: so the change, and its
``reservation.expired`` event, follow the expiry within seconds rather than within a
minute. A reservation that ended otherwise meanwhile (used, cancelled, a 2.0.1 charger's own
ReservationStatusUpdate) is left as it is: the transition applies to Accepted only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger

from evreserve import aws, lifecycle
from evreserve.models import ReservationState, utcnow
from evreserve.storage.reservations import ReservationStore
from evreserve_lambda import snapstart
from evreserve_lambda.settings import FunctionSettings

logger = Logger()

#: How far ahead a run looks: the schedule's period.
LOOKAHEAD = timedelta(minutes=1)
_store: ReservationStore | None = None


def _reservations() -> ReservationStore:
    global _store
    if _store is None:
        settings = FunctionSettings.from_environment()
        _store = ReservationStore(aws.dynamodb_client(settings), settings.reservations_table)
    return _store


def use_store(store: ReservationStore | None) -> None:
    """Replace the store (tests)."""
    global _store
    _store = store


def sweep(
    store: ReservationStore,
    *,
    now: Callable[[], datetime] = utcnow,
    sleep: Callable[[float], None] = time.sleep,
    lookahead: timedelta = LOOKAHEAD,
    deadline: datetime | None = None,
) -> int:
    """End what expires before ``now() + lookahead``, each at its expiryDate; how many were ended.

    Accepted ones are stored Expired. A Pending one (its outcome never stored) is stored
    Failed once past its answer-by time, as readers already see it. Stops at ``deadline``
    (the run's time running out): what is left is the next run's.
    """
    started = now()
    ended = 0
    for due in store.expiring(started + lookahead):
        if deadline is not None and max(now(), due.expiry) >= deadline:
            break
        if due.state is ReservationState.PENDING:
            if due.answer_by is None or due.answer_by > now():
                continue  # its answer may still come
            transition = lifecycle.unanswered(due.command_id)
            at = now()
        else:
            wait = (due.expiry - now()).total_seconds()
            if wait > 0:
                sleep(wait)
            transition = lifecycle.expired(due.command_id)
            at = max(now(), due.expiry)
        if store.transition(due.account_id, due.reservation_id, transition, at=at):
            ended += 1
    return ended


#: What a run keeps of its timeout for the writes after its last wait.
RESERVE = timedelta(seconds=10)


# Under SnapStart the snapshot holds the clients (evreserve_lambda/snapstart.py).
snapstart.install(_reservations)


@logger.inject_lambda_context(clear_state=True, log_event=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    remaining = timedelta(milliseconds=context.get_remaining_time_in_millis())
    ended = sweep(_reservations(), deadline=utcnow() + remaining - RESERVE)
    if ended:
        logger.info("reservations expired", extra={"ended": ended})
    return {"ended": ended}
