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
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from ..aws import unavailable_on_transport_errors
from ..errors import RateLimited
from ..resources import PK, TTL_ATTRIBUTE
from .base import DynamoStore, is_condition_failure

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
    ) -> None:
        super().__init__(client, table)
        if limit < 1 or window_s < 1:
            raise ValueError("limit and window_s must be positive")
        self.limit = limit
        self.window_s = window_s
        self._clock = clock

    def hit(self, key_id: str) -> None:
        now = self._clock()
        start = int(now // self.window_s) * self.window_s
        end = start + self.window_s
        try:
            with unavailable_on_transport_errors(self.service):
                self._client.update_item(
                    TableName=self._table,
                    Key={PK: {"S": f"RATE#{key_id}#{start}"}},
                    UpdateExpression="ADD hits :one SET #ttl = if_not_exists(#ttl, :ttl)",
                    ConditionExpression="attribute_not_exists(hits) OR hits < :limit",
                    ExpressionAttributeNames={"#ttl": TTL_ATTRIBUTE},
                    ExpressionAttributeValues={
                        ":one": {"N": "1"},
                        ":limit": {"N": str(self.limit)},
                        ":ttl": {"N": str(end + _TTL_MARGIN_S)},
                    },
                )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            retry_after = max(1, math.ceil(end - now))
            raise RateLimited(
                f"Rate limit of {self.limit} requests per {self.window_s} s exceeded; retry in {retry_after} s",
                retry_after_s=retry_after,
            ) from exc
