"""The home of the gateway's view of drivers' tokens: access IDs, cached for a bounded time.

Every Authorize (and every 1.6 StartTransaction, every 2.0.1 TransactionEvent with an
idToken) needs the presented token's access ID. A driver presents the same card to
Authorize and to StartTransaction within seconds, and fleets share few groups, so
answers are cached per (account, idTag) for ``ttl_s``: a change made through the API
reaches every charger within that time (docs/api.md, "Access IDs"). The cache is
bounded (least recently used entries go first), concurrent lookups of one token share
one read, and a failed read falls back to the last known answer, however old, before
it falls back to "unknown": a storage outage then keeps known drivers charging and
revoked tokens blocked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from evreserve.access_ids import AccessId, tag_key
from evreserve.storage.access_ids import AccessIdStore

from .offload import Offload

#: A lookup waits this long for the table; then the charger is answered from what is known.
LOOKUP_TIMEOUT_S = 3.0

log = logging.getLogger("evreserve_gateway.tokens")

Key = tuple[int, str]


@dataclass(slots=True)
class _Entry:
    access_id: AccessId | None
    fetched_at: float


class TokenCache:
    def __init__(
        self,
        store: AccessIdStore,
        io: Offload,
        *,
        ttl_s: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._io = io
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._reading: dict[Key, asyncio.Future[AccessId | None]] = {}
        #: Reads made (not answered from the cache), for tests and the gateway's metrics.
        self.reads = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def lookup(self, account_id: int, id_tag: str) -> AccessId | None:
        """The account's access ID for ``id_tag`` (any case), at most ``ttl_s`` old when storage answers."""
        key = (account_id, tag_key(id_tag))
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry.fetched_at < self._ttl_s:
            self._entries.move_to_end(key)
            return entry.access_id
        reading = self._reading.get(key)
        if reading is None:
            reading = asyncio.get_running_loop().create_future()
            self._reading[key] = reading
            asyncio.get_running_loop().create_task(self._read(key, id_tag, entry, reading))
        # Shielded: one waiter cancelled (its charger left) must not cancel the others' read.
        return await asyncio.shield(reading)

    async def _read(
        self, key: Key, id_tag: str, known: _Entry | None, reading: asyncio.Future[AccessId | None]
    ) -> None:
        try:
            self.reads += 1
            async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                found = await self._io(self._store.by_tag, key[0], id_tag, consistent=False)
        except Exception as exc:
            stale = known.access_id if known is not None else None
            log.warning(
                "could not read an access ID; answering from the last known one"
                if known is not None
                else "could not read an access ID; treating the token as unknown",
                extra={"accountId": key[0], "error": repr(exc)},
            )
            reading.set_result(stale)
        else:
            self._store_entry(key, found)
            reading.set_result(found)
        finally:
            del self._reading[key]

    def _store_entry(self, key: Key, found: AccessId | None) -> None:
        self._entries[key] = _Entry(found, self._clock())
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
