"""Cursor pages over the registry's per-account listings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..storage.paging import Key, decode_cursor, encode_cursor

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def take_page(
    source: Callable[[Key | None, int], Iterator[tuple[T, Key]]],
    *,
    partition: dict[str, str],
    limit: int,
    cursor: str | None,
    keep: Callable[[T], bool] = lambda _item: True,
    selective: bool = False,
) -> Page[T]:
    """Read ``limit`` kept items (plus one to know whether more exist) from ``source``."""
    start = decode_cursor(cursor, expect=partition) if cursor else None
    found: list[tuple[T, Key]] = []
    for item, key in source(start, 100 if selective else limit + 1):
        if not keep(item):
            continue
        found.append((item, key))
        if len(found) > limit:
            break
    items = found[:limit]
    has_next = len(found) > limit
    return Page([i for i, _ in items], encode_cursor(items[-1][1]) if has_next and items else None)
