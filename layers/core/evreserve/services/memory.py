"""What a warm API function instance remembers between requests, why that is safe, and the lookup using it.

Both memories are bounded (least recently used dropped first) and neither is ever the last
word: every hit is confirmed against the table (see each class).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from ..errors import ChargerOffline, NotFound
from ..models import Charger, Port
from ..storage.registry import RegistryStore
from .principal import Principal

#: Ports whose charger an instance remembers (two ints each: ~1 MB at most).
PORT_CACHE_ENTRIES = 10_000

#: Connected chargers an instance remembers (an item with its ports: a few KB each).
CHARGER_CACHE_ENTRIES = 1_000


class _Lru[K, V]:
    """A bounded map, least recently used dropped first."""

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._entries: OrderedDict[K, V] = OrderedDict()
        # A function instance serves one request at a time, but the local API and the
        # tests share one service between threads.
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def _store(self, key: K, value: V) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def drop(self, key: K) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


class PortCache(_Lru[int, tuple[int, int]]):
    """port id -> (charger id, account id).

    Safe to keep for the life of a function instance because the mapping never changes
    while the port exists: port and charger ids come from sequences and are never
    reused, a port never moves to another charger (``RegistryStore.update_charger``
    only adds, renumbers or releases a charger's own ports) and a charger never changes
    account. What can change is that the port or its charger is deleted: the caller
    confirms every hit on the charger item, and ``drop``s the entry when the port is not
    on it.
    """

    def __init__(self, max_entries: int = PORT_CACHE_ENTRIES) -> None:
        super().__init__(max_entries)

    def put(self, port_id: int, charger_id: int, account_id: int) -> None:
        self._store(port_id, (charger_id, account_id))


class ChargerCache(_Lru[int, Charger]):
    """charger id -> the charger item as last read, kept only while it was connected.

    Unlike a port's pointer, a charger item changes (its registry fields, its
    connection), so a remembered one is never trusted alone: the command's own
    transaction carries ``RegistryStore.unchanged_request`` for it, and when that fails
    the request starts again from a fresh read. The read saved is one DynamoDB request
    and one round trip before every warm command.
    """

    def __init__(self, max_entries: int = CHARGER_CACHE_ENTRIES) -> None:
        super().__init__(max_entries)

    def put(self, charger: Charger) -> None:
        self._store(charger.id, charger)


class ChargerLookup:
    """The charger (and port) a command goes to, from memory where that is safe, from the registry otherwise."""

    def __init__(self, registry: RegistryStore, ports: PortCache, chargers: ChargerCache) -> None:
        self._registry = registry
        self._ports = ports
        self._chargers = chargers

    def _charger(self, charger_id: int, fresh: bool) -> tuple[Charger | None, bool]:
        """The charger item, and whether it is a remembered one (``ChargerCache``) rather than read now."""
        if not fresh:
            remembered = self._chargers.get(charger_id)
            if remembered is not None:
                return remembered, True
        charger = self._registry.get_charger(charger_id)
        if charger is not None and charger.is_connected:
            self._chargers.put(charger)
        else:
            # A disconnected charger is read every time: it may be back any moment.
            self._chargers.drop(charger_id)
        return charger, False

    def connected(self, principal: Principal, charger_id: int, not_found: str, fresh: bool) -> tuple[Charger, bool]:
        """The caller's connected charger and whether it is remembered; ``NotFound`` / ``ChargerOffline`` if not."""
        charger, remembered = self._charger(charger_id, fresh)
        if charger is None or not principal.may_access_charger(charger.account_id, charger.id):
            raise NotFound(not_found)
        if not charger.is_connected:
            raise ChargerOffline("The charger is not connected")
        return charger, remembered

    def with_port(self, principal: Principal, port_id: int, fresh: bool) -> tuple[Charger, Port, bool]:
        """The port's charger, the port on it and whether the charger is remembered; ``NotFound`` for all misses.

        A remembered pointer saves the pointer read; the charger item (as read, or
        remembered and confirmed by the command's transaction) decides: tenant, key scope,
        the port still on it. When the charger no longer has the port, the pointer is
        read once more: the port was deleted (no pointer: 404) or, in principle, the
        memory was wrong.
        """
        cached = self._ports.get(port_id)
        if cached is not None:
            charger_id, account_id = cached
            if not principal.may_access_charger(account_id, charger_id):
                raise NotFound("Port not found")
            found = self._port_on(charger_id, account_id, port_id, fresh)
            if found is not None:
                return found
            self._ports.drop(port_id)
        ref = self._registry.get_port_ref(port_id)
        if ref is None or not principal.may_access_charger(ref.account_id, ref.charger_id):
            raise NotFound("Port not found")
        found = self._port_on(ref.charger_id, ref.account_id, port_id, fresh)
        if found is None:
            raise NotFound("Port not found")
        self._ports.put(port_id, ref.charger_id, ref.account_id)
        return found

    def _port_on(
        self, charger_id: int, account_id: int, port_id: int, fresh: bool
    ) -> tuple[Charger, Port, bool] | None:
        """The charger with the port on it, or ``None``; a remembered charger without it is read again (a new port)."""
        charger, remembered = self._charger(charger_id, fresh)
        port = _port_of(charger, account_id, port_id)
        if port is None and remembered:
            charger, remembered = self._charger(charger_id, fresh=True)
            port = _port_of(charger, account_id, port_id)
        if charger is None or port is None:
            return None
        return charger, port, remembered

    def forget(self, charger_id: int) -> None:
        """Read the charger again next time: its command went nowhere or got no answer."""
        self._chargers.drop(charger_id)

    def unchanged(self, charger: Charger, remembered: bool) -> list[dict[str, Any]]:
        """The transaction items that confirm a remembered charger (none for one read just now)."""
        return [self._registry.unchanged_request(charger)] if remembered else []


def _port_of(charger: Charger | None, account_id: int, port_id: int) -> Port | None:
    """The port on the charger, if the charger is there and still the account's."""
    return charger.port_by_id(port_id) if charger is not None and charger.account_id == account_id else None
