"""The per-key counter (``RateLimiter``) against moto's DynamoDB with the template's table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from fixtures.moto_env import mocked_aws

from devstack.template import create_tables, load_template
from evreserve.errors import RateLimited
from evreserve.storage import ratelimit
from evreserve.storage.ratelimit import RateLimiter


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    with mocked_aws(monkeypatch):
        client = boto3.client("dynamodb", region_name="us-east-1")
        yield client, create_tables(client, "unit", load_template())["RATE_LIMIT_TABLE"]


def test_limit_per_window_then_retry_after_until_the_next(table):
    """3/min: the 4th request in a window is refused with the seconds left; the next window starts afresh."""
    client, name = table
    now = [600.0 + 45.2]  # 45.2 s into a minute
    limiter = RateLimiter(client, name, limit=3, clock=lambda: now[0])
    for _ in range(3):
        limiter.hit("k1")
    with pytest.raises(RateLimited) as refused:
        limiter.hit("k1")
    assert refused.value.retry_after_s == 15  # ceil(60 - 45.2)
    limiter.hit("k2")  # another key has its own count
    now[0] = 660.0
    limiter.hit("k1")


def test_window_items_expire_by_ttl(table):
    """Each window's item carries a TTL after its end, so the table does not grow."""
    client, name = table
    RateLimiter(client, name, limit=3, clock=lambda: 125.0).hit("k1")
    (item,) = client.scan(TableName=name)["Items"]
    assert item["pk"] == {"S": "RATE#k1#120"} and item["hits"] == {"N": "1"}
    assert int(item["ttl"]["N"]) > 180


def test_a_deferred_count_rides_another_transaction_or_is_settled_after(table):
    """The counts' items written in someone else's transaction count the request once; a request
    no transaction counted is counted by settle(), which refuses past the limit."""
    client, name = table
    limiter = RateLimiter(client, name, limit=2, clock=lambda: 125.0, account_limit=10)
    with ratelimit.deferred(ratelimit.DeferredCount(limiter, "k1", 7)) as count:
        due = ratelimit.due()
        assert due is count
        items, refused = due.counts()
        assert len(items) == 2  # the key's count and the account's
        client.transact_write_items(TransactItems=items)
        count.counted = True
        assert ratelimit.due() is None
        count.settle()  # counted already: no second count
    assert ratelimit.due() is None  # outside the request
    hits = {i["pk"]["S"]: i["hits"]["N"] for i in client.scan(TableName=name)["Items"]}
    assert hits == {"RATE#k1#120": "1", "RATE#account:7#120": "1"}
    ratelimit.DeferredCount(limiter, "k1", 7).settle()
    with pytest.raises(RateLimited, match="per key"):
        ratelimit.DeferredCount(limiter, "k1", 7).settle()
    assert refused(0).retry_after_s == 55 and "per account" in refused(1).message
