"""The OCPP message log as the API shows it: one charger's logged CALLs, within the caller's scope."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from ..messagelog import DEFAULT_LIMIT, MessagePage, message_query
from ..storage.messages import MessageLogStore
from .chargers import ChargerService
from .principal import Principal


class MessageLogService:
    def __init__(self, chargers: ChargerService, store: MessageLogStore, clock: Callable[[], datetime]) -> None:
        self._chargers = chargers
        self._store = store
        self._clock = clock

    def list(
        self,
        principal: Principal,
        charger_id: int,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        types: Iterable[str] = (),
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> MessagePage:
        """A page of the charger's messages, newest first; ``NotFound`` outside the caller's account or scope."""
        principal.require_account()
        query = message_query(
            charger_id, now=self._clock(), start=start, end=end, types=types, limit=limit, cursor=cursor
        )
        charger = self._chargers.get(principal, charger_id)
        return self._store.page(charger.account_id, query)
