"""The gateway's cache of access IDs: bounded staleness, bounded size, one read per token, outages."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest

from evreserve.access_ids import AccessId, AuthorizationStatus, TokenType, UnknownTokenPolicy
from evreserve.models import Account
from evreserve_gateway.offload import Offload
from evreserve_gateway.tokens import TokenCache

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def token(tag: str, status: AuthorizationStatus = AuthorizationStatus.AUTHORIZED) -> AccessId:
    return AccessId(
        access_id=1,
        account_id=7,
        ocpp_id_tag=tag,
        type=TokenType.RFID,
        authorization_status=status,
        created_at=NOW,
        updated_at=NOW,
    )


class Store:
    """Access IDs by (account, casefolded tag); ``gate`` holds reads back; ``down`` fails them."""

    def __init__(self) -> None:
        self.tokens: dict[tuple[int, str], AccessId] = {}
        self.reads: list[tuple[int, str, bool]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.down = False
        self.policies: dict[int, UnknownTokenPolicy] = {}

    def get_account(self, account_id: int) -> Account | None:
        self.reads.append((account_id, "ACCOUNT", True))
        if self.down:
            raise ConnectionError("table unreachable")
        policy = self.policies.get(account_id)
        return Account(id=account_id, name="a", created_at=NOW, unknown_id_tags=policy) if policy else None

    def by_tag(self, account_id: int, id_tag: str, *, consistent: bool = True) -> AccessId | None:
        self.reads.append((account_id, id_tag, consistent))
        self.gate.wait(5)
        if self.down:
            raise ConnectionError("table unreachable")
        return self.tokens.get((account_id, id_tag.casefold()))


@pytest.fixture
def io():
    pool = Offload(4, "test-io")
    yield pool
    pool.shutdown()


async def test_an_answer_is_kept_for_the_ttl_then_read_again(io):
    store, now = Store(), [0.0]
    cache = TokenCache(store, store, io, ttl_s=30, max_entries=10, clock=lambda: now[0])  # type: ignore[arg-type]
    store.tokens[(7, "card-1")] = token("Card-1")
    assert (await cache.lookup(7, "CARD-1")) == token("Card-1")
    store.tokens[(7, "card-1")] = token("Card-1", AuthorizationStatus.REVOKED)
    now[0] = 29.9
    assert (await cache.lookup(7, "card-1")).authorization_status is AuthorizationStatus.AUTHORIZED
    now[0] = 30.0
    assert (await cache.lookup(7, "card-1")).authorization_status is AuthorizationStatus.REVOKED
    # Eventually consistent reads: the staleness is the TTL's anyway.
    assert [(a, consistent) for a, _, consistent in store.reads] == [(7, False), (7, False)]


async def test_unknown_tokens_are_cached_too_and_accounts_are_apart(io):
    store = Store()
    cache = TokenCache(store, store, io, ttl_s=30, max_entries=10)  # type: ignore[arg-type]
    store.tokens[(7, "t")] = token("T")
    assert await cache.lookup(8, "T") is None
    assert await cache.lookup(8, "t") is None
    assert await cache.lookup(7, "T") == token("T")
    assert len(store.reads) == 2


async def test_concurrent_lookups_of_one_token_share_one_read(io):
    store = Store()
    store.gate.clear()
    cache = TokenCache(store, store, io, ttl_s=30, max_entries=10)  # type: ignore[arg-type]
    store.tokens[(7, "t")] = token("T")
    waiting = [asyncio.create_task(cache.lookup(7, "T")) for _ in range(20)]
    await asyncio.sleep(0.05)
    waiting[0].cancel()  # one charger leaves: the others still get the answer
    store.gate.set()
    answers = await asyncio.gather(*waiting[1:])
    assert answers == [token("T")] * 19 and len(store.reads) == 1


async def test_the_least_recently_presented_token_goes_first(io):
    store = Store()
    cache = TokenCache(store, store, io, ttl_s=30, max_entries=3)  # type: ignore[arg-type]
    for tag in ("A", "B", "C"):
        await cache.lookup(7, tag)
    await cache.lookup(7, "A")  # A is used again: B is now the oldest
    await cache.lookup(7, "D")
    assert len(cache) == 3
    reads = len(store.reads)
    await cache.lookup(7, "A")
    await cache.lookup(7, "C")
    assert len(store.reads) == reads
    await cache.lookup(7, "B")
    assert len(store.reads) == reads + 1


async def test_an_outage_answers_from_the_last_known_token_then_as_unknown(io):
    store, now = Store(), [0.0]
    cache = TokenCache(store, store, io, ttl_s=30, max_entries=10, clock=lambda: now[0])  # type: ignore[arg-type]
    store.tokens[(7, "r")] = token("R", AuthorizationStatus.REVOKED)
    assert (await cache.lookup(7, "R")).authorization_status is AuthorizationStatus.REVOKED
    store.down = True
    now[0] = 3600.0
    # A revoked card stays blocked through an outage, however old the answer is.
    assert (await cache.lookup(7, "R")).authorization_status is AuthorizationStatus.REVOKED
    assert await cache.lookup(7, "never-seen") is None
    store.down = False
    store.tokens.pop((7, "r"))
    assert await cache.lookup(7, "R") is None


async def test_a_read_that_hangs_is_given_up_after_the_lookup_timeout(io, monkeypatch):
    from evreserve_gateway import tokens

    monkeypatch.setattr(tokens, "LOOKUP_TIMEOUT_S", 0.1)
    store = Store()
    store.gate.clear()
    cache = TokenCache(store, store, io, ttl_s=30, max_entries=10)  # type: ignore[arg-type]
    store.tokens[(7, "t")] = token("T")
    assert await asyncio.wait_for(cache.lookup(7, "T"), 2) is None
    store.gate.set()


async def test_an_accounts_policy_is_cached_like_a_token_and_defaults_to_accepted(io):
    store, now = Store(), [0.0]
    cache = TokenCache(store, store, io, ttl_s=30, max_entries=10, clock=lambda: now[0])  # type: ignore[arg-type]
    store.policies[7] = UnknownTokenPolicy.REJECT
    assert await cache.policy(7) is UnknownTokenPolicy.REJECT
    assert await cache.policy(8) is UnknownTokenPolicy.ACCEPT  # no such account: the default
    store.policies[7] = UnknownTokenPolicy.ACCEPT
    assert await cache.policy(7) is UnknownTokenPolicy.REJECT
    now[0] = 31.0
    assert await cache.policy(7) is UnknownTokenPolicy.ACCEPT
    store.policies[7] = UnknownTokenPolicy.REJECT
    store.down = True
    now[0] = 62.0
    assert await cache.policy(7) is UnknownTokenPolicy.ACCEPT  # the last known one, through the outage
    assert await cache.policy(9) is UnknownTokenPolicy.ACCEPT
