"""Requests per API key, counted in DynamoDB so that every Lambda instance sees one count.

A fixed window (``window_s``, one minute for the API family's "200 requests per
minute"): one item per key and window, ``pk = RATE#{key_id}#{window start}``, and one
``UpdateItem`` per request that adds 1 only while the count is under the limit. The
condition makes the check and the increment one atomic step, so concurrent instances
can never let more than ``limit`` requests through in a window; a refused request does
not count. Items expire by TTL shortly after their window: nothing reads an old window
(its key holds its start), so TTL's lazy deletion only costs storage.

A fixed window lets a key send up to twice the limit across a window boundary (the end
of one minute and the start of the next). A sliding window would need the previous
window's count too, i.e. a read per request on top of the write; the limit protects
the service from a runaway client, and 2x for one boundary does not change that.

A request that sends a command to a charger writes the command record in a transaction
anyway: its count rides that transaction (``DeferredCount``) instead of
costing a request of its own before it, one DynamoDB request and one round trip less on
the reservation path. A request that ends before that transaction (an invalid body, an
unknown port) is counted when it ends; over the limit, its answer becomes the 429, and
it changed nothing. A retry that finds its command on the way is counted at once, before
it waits for the outcome, so that a key over its limit cannot hold a function for a
command's deadline. The contract: the API function
defers the count for the request (``deferred``); the command channel adds ``due()``'s
items to its transaction and marks it counted when that transaction wrote.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..aws import ClientError, unavailable_on_transport_errors
from ..errors import RateLimited
from ..resources import PK, TTL_ATTRIBUTE
from .base import ConditionsFailed, DynamoStore, is_condition_failure, transact

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

#: How long a window's item outlives the window (TTL deletes within days anyway).
_TTL_MARGIN_S = 60

#: The error for a count item's failed condition, by its index among the counts.
Refusal = Callable[[int], RateLimited]


class RateLimiter(DynamoStore):
    """``hit(key_id)`` counts one request, or raises ``RateLimited`` with the seconds to wait."""

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        limit: int,
        window_s: int = 60,
        clock: Callable[[], float] = time.time,
        account_limit: int | None = None,
    ) -> None:
        super().__init__(client, table)
        if limit < 1 or window_s < 1 or (account_limit is not None and account_limit < 1):
            raise ValueError("limit, account_limit and window_s must be positive")
        self.limit = limit
        #: Requests per window of all the keys of one account together.
        self.account_limit = account_limit
        self.window_s = window_s
        self._clock = clock

    def _count(self, counter: str, limit: int, end: int) -> dict[str, Any]:
        return {
            "TableName": self._table,
            "Key": {PK: {"S": counter}},
            "UpdateExpression": "ADD hits :one SET #ttl = if_not_exists(#ttl, :ttl)",
            "ConditionExpression": "attribute_not_exists(hits) OR hits < :limit",
            "ExpressionAttributeNames": {"#ttl": TTL_ATTRIBUTE},
            "ExpressionAttributeValues": {
                ":one": {"N": "1"},
                ":limit": {"N": str(limit)},
                ":ttl": {"N": str(end + _TTL_MARGIN_S)},
            },
        }

    def counts(self, key_id: str, account_id: int | None = None) -> tuple[list[dict[str, Any]], Refusal]:
        """The transaction items that count one request, and the error for item ``i``'s failed condition.

        The key's count, then (with ``account_id`` and an account limit) the account's:
        an account cannot multiply its budget by making more keys.
        """
        now = self._clock()
        start = int(now // self.window_s) * self.window_s
        end = start + self.window_s
        retry_after = max(1, math.ceil(end - now))
        items = [{"Update": self._count(f"RATE#{key_id}#{start}", self.limit, end)}]
        if account_id is not None and self.account_limit is not None:
            items.append({"Update": self._count(f"RATE#account:{account_id}#{start}", self.account_limit, end)})
        account_limit = self.account_limit

        def refused(index: int) -> RateLimited:
            if index == 0 or account_limit is None:
                return self._refusal(self.limit, "key", retry_after)
            return self._refusal(account_limit, "account", retry_after)

        return items, refused

    def hit(self, key_id: str, account_id: int | None = None) -> None:
        """Count one request of the key and, with ``account_id`` and an account limit, of its account.

        Both counts are one request (a transaction when there are two), and a refused
        request counts nowhere.
        """
        items, refused = self.counts(key_id, account_id)
        if len(items) == 1:
            try:
                with unavailable_on_transport_errors(self.service):
                    self._client.update_item(**items[0]["Update"])
            except ClientError as exc:
                if not is_condition_failure(exc):
                    raise
                raise refused(0) from exc
            return
        try:
            transact(self._client, items, self.service)
        except ConditionsFailed as failure:
            raise refused(min(failure.items)) from failure

    def _refusal(self, limit: int, who: str, retry_after: int) -> RateLimited:
        return RateLimited(
            f"Rate limit of {limit} requests per {self.window_s} s per {who} exceeded; retry in {retry_after} s",
            retry_after_s=retry_after,
        )


@dataclass(slots=True)
class DeferredCount:
    """A request's count, waiting to ride the transaction that writes its command (module docstring)."""

    limiter: RateLimiter
    key_id: str
    account_id: int | None
    #: Set once the count is decided: carried by a transaction that wrote, refused by
    #: one (a refused request counts nowhere), or settled.
    counted: bool = False

    def counts(self) -> tuple[list[dict[str, Any]], Refusal]:
        """The items to add to the transaction, and the error for the ``i``-th one's failed condition."""
        return self.limiter.counts(self.key_id, self.account_id)

    def settle(self) -> None:
        """Count the request now if no transaction did (``RateLimited`` over the limit)."""
        if not self.counted:
            self.counted = True
            self.limiter.hit(self.key_id, self.account_id)


_deferred: ContextVar[DeferredCount | None] = ContextVar("evreserve_deferred_rate_count", default=None)


@contextmanager
def deferred(count: DeferredCount) -> Iterator[DeferredCount]:
    """While in this block (one request), a command transaction may carry ``count`` (``due``)."""
    token = _deferred.set(count)
    try:
        yield count
    finally:
        _deferred.reset(token)


def due() -> DeferredCount | None:
    """The current request's count, if it is deferred and no transaction has carried it yet."""
    count = _deferred.get()
    return count if count is not None and not count.counted else None
