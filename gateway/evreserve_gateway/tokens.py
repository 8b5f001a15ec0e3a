"""The home of the gateway's view of drivers' tokens: access IDs and accounts' policies, cached for a bounded time.

Every Authorize (and every 1.6 StartTransaction, every 2.0.1 TransactionEvent with an
idToken) needs the presented token's access ID, and for a token the account has not
registered, the account's policy for unknown tokens. A driver presents the same card to
Authorize and to StartTransaction within seconds, and an account's chargers share one
policy, so answers are cached for ``ttl_s``: a change made through the API reaches every
charger within that time (docs/api.md, "Access IDs"). The cache is bounded (least
recently used entries go first), concurrent lookups of one key share one read, and a
failed read falls back to the last known answer, however old, before it falls back to
"unknown": a storage outage then keeps known drivers charging and revoked tokens blocked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import TypeVar

from evreserve.access_ids import AccessId, UnknownTokenPolicy, tag_key
from evreserve.storage.access_ids import AccessIdStore
from evreserve.storage.accounts import AccountStore

from .offload import Offload

#: A lookup waits this long for the table; then the charger is answered from what is known.
LOOKUP_TIMEOUT_S = 3.0

log = logging.getLogger("evreserve_gateway.tokens")

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(slots=True)
class _Entry[V]:
    value: V
    fetched_at: float


class _Cache[K: Hashable, V]:
    """Bounded, time-limited, one read per key at a time, the last known value through an outage."""

    def __init__(self, what: str, ttl_s: float, max_entries: int, clock: Callable[[], float]) -> None:
        self._what = what
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, _Entry[V]] = OrderedDict()
        self._reading: dict[K, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: K, load: Callable[[], Awaitable[V]], unknown: V) -> V:
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry.fetched_at < self._ttl_s:
            self._entries.move_to_end(key)
            return entry.value
        reading = self._reading.get(key)
        if reading is None:
            # The task is the key's read until it ends; every waiter shares it.
            reading = asyncio.get_running_loop().create_task(
                self._read(key, load, unknown if entry is None else entry.value)
            )
            self._reading[key] = reading
        # Shielded: one waiter cancelled (its charger left) must not cancel the others' read.
        return await asyncio.shield(reading)

    async def _read(self, key: K, load: Callable[[], Awaitable[V]], fallback: V) -> V:
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                found = await load()
        except Exception as exc:
            log.warning("could not read %s; answering from what is known", self._what, extra={"error": repr(exc)})
            return fallback
        else:
            self._entries[key] = _Entry(found, self._clock())
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
            return found
        finally:
            del self._reading[key]


class TokenCache:
    """Access IDs by (account, idTag in any case) and accounts' policies for unknown tokens."""

    def __init__(
        self,
        store: AccessIdStore,
        accounts: AccountStore,
        io: Offload,
        *,
        ttl_s: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._accounts = accounts
        self._io = io
        self._tokens: _Cache[tuple[int, str], AccessId | None] = _Cache("an access ID", ttl_s, max_entries, clock)
        # One per account: as many as accounts with chargers here, far fewer than tokens.
        self._policies: _Cache[int, UnknownTokenPolicy] = _Cache("an account's policy", ttl_s, max_entries, clock)

    def __len__(self) -> int:
        return len(self._tokens)

    async def lookup(self, account_id: int, id_tag: str) -> AccessId | None:
        """The account's access ID for ``id_tag`` (any case); ``None``: not registered, or not known."""

        async def load() -> AccessId | None:
            # Eventually consistent: half the cost, and the staleness is the TTL's anyway.
            return await self._io(self._store.by_tag, account_id, id_tag, consistent=False)

        return await self._tokens.get((account_id, tag_key(id_tag)), load, None)

    async def policy(self, account_id: int) -> UnknownTokenPolicy:
        """The account's policy for unregistered tokens; the default when it cannot be read."""

        async def load() -> UnknownTokenPolicy:
            account = await self._io(self._accounts.get_account, account_id)
            return account.unknown_id_tags if account is not None else UnknownTokenPolicy.ACCEPT

        return await self._policies.get(account_id, load, UnknownTokenPolicy.ACCEPT)
