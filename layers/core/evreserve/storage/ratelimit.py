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
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..aws import unavailable_on_transport_errors
from ..errors import RateLimited
from ..resources import PK, TTL_ATTRIBUTE
from .base import ConditionsFailed, DynamoStore, is_condition_failure, transact

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

#: How long a window's item outlives the window (TTL deletes within days anyway).
_TTL_MARGIN_S = 60


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

    def hit(self, key_id: str, account_id: int | None = None) -> None:
        """Count one request of the key and, with ``account_id`` and an account limit, of its account.

        Both counts are one transaction (one request): an account cannot multiply its
        budget by making more keys, and a refused request counts nowhere.
        """
        now = self._clock()
        start = int(now // self.window_s) * self.window_s
        end = start + self.window_s
        retry_after = max(1, math.ceil(end - now))
        key_count = self._count(f"RATE#{key_id}#{start}", self.limit, end)
        if account_id is None or self.account_limit is None:
            try:
                with unavailable_on_transport_errors(self.service):
                    self._client.update_item(**key_count)
            except ClientError as exc:
                if not is_condition_failure(exc):
                    raise
                raise self._refusal(self.limit, "key", retry_after) from exc
            return
        account_count = self._count(f"RATE#account:{account_id}#{start}", self.account_limit, end)
        try:
            transact(self._client, [{"Update": key_count}, {"Update": account_count}], self.service)
        except ConditionsFailed as failure:
            limit, who = (self.limit, "key") if 0 in failure.items else (self.account_limit, "account")
            raise self._refusal(limit, who, retry_after) from failure

    def _refusal(self, limit: int, who: str, retry_after: int) -> RateLimited:
        return RateLimited(
            f"Rate limit of {limit} requests per {self.window_s} s per {who} exceeded; retry in {retry_after} s",
            retry_after_s=retry_after,
        )
