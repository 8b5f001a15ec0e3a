"""Key-ordered iteration over a DynamoDB query, resumable from any item it yielded.

The API's cursors are the key of the last item a page returned (not DynamoDB's
``LastEvaluatedKey``), because the services filter items after reading them: a page
may end in the middle of a DynamoDB page, and the next one must start right after it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ..aws import unavailable_on_transport_errors
from ..errors import InvalidRequest
from ..resources import GSI1_PK, GSI1_SK, PK, SK

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Key = dict[str, Any]
T = TypeVar("T")

_KEY_ATTRIBUTES = (PK, SK, GSI1_PK, GSI1_SK)


def item_key(item: dict[str, Any], index: bool) -> Key:
    """The start key that resumes a query right after ``item``."""
    names = _KEY_ATTRIBUTES if index else (PK, SK)
    return {name: item[name] for name in names if name in item}


def iter_query(
    client: DynamoDBClient,
    *,
    start: Key | None,
    page_size: int,
    **query: Any,
) -> Iterator[tuple[dict[str, Any], Key]]:
    """Yield ``(item, resume_key)`` in key order, reading one DynamoDB page at a time.

    The consumer stops when it has enough; pages it never asks for are never read.
    """
    index = "IndexName" in query
    while True:
        kwargs: dict[str, Any] = {**query, "Limit": page_size}
        if start:
            kwargs["ExclusiveStartKey"] = start
        with unavailable_on_transport_errors("DynamoDB"):
            page = client.query(**kwargs)
        for item in page.get("Items", []):
            yield item, item_key(item, index)
        start = page.get("LastEvaluatedKey")
        if not start:
            return


def encode_cursor(key: Key) -> str:
    raw = json.dumps({name: value["S"] for name, value in key.items()}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *, expect: dict[str, str], index: bool = False) -> Key:
    """The start key a cursor stands for.

    ``expect`` pins the partition attributes to the caller's own (e.g. its account), so
    a forged cursor can never resume a query inside someone else's partition. The key
    must name exactly the attributes DynamoDB wants for the query (the table's key, plus
    the index's on an index query) as non-empty strings: anything else, handed on as
    ``ExclusiveStartKey``, would be DynamoDB's ValidationException, a 500.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidRequest(
            "nextPageCursor is not a cursor this API issued", field="nextPageCursor", location="query"
        ) from exc
    valid = (
        isinstance(data, dict)
        and set(data) == set(_KEY_ATTRIBUTES if index else (PK, SK))
        and all(isinstance(v, str) and v for v in data.values())
        and all(data.get(name) == value for name, value in expect.items())
    )
    if not valid:
        raise InvalidRequest("nextPageCursor does not belong to this query", field="nextPageCursor", location="query")
    return {name: {"S": value} for name, value in data.items()}


@dataclass(frozen=True, slots=True)
class Page[T]:
    """One page of a listing, and the cursor that continues it (``None``: the last page)."""

    items: list[T]
    next_cursor: str | None


def _keep_all(_item: object) -> bool:
    return True


def read_page[T](
    source: Callable[[Key | None, int], Iterator[tuple[T, Key]]],
    *,
    partition: dict[str, str],
    limit: int,
    cursor: str | None,
    keep: Callable[[T], bool] = _keep_all,
    selective: bool = False,
) -> Page[T]:
    """Read ``limit`` kept items (plus one, to know whether more exist) from ``source``.

    ``partition`` pins the cursor to the query's own partition (``decode_cursor``).
    ``selective``: ``keep`` drops many items, so DynamoDB pages are read 100 at a time
    rather than ``limit + 1``.
    """
    start = decode_cursor(cursor, expect=partition, index=GSI1_PK in partition) if cursor else None
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
