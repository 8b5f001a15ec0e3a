"""Who gets a charger connection: refusals before the upgrade, one account per identity, throttled guessing,
no secrets in logs."""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import pytest
from fixtures.gateway_fixtures import PASSWORD, Behaviour, charger_session, charger_url, wait_held, wait_until
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from evreserve.errors import AlreadyExists
from evreserve.models import Charger, OcppVersion, OutcomeKind
from evreserve.security import hash_password, needs_rehash, scrypt_hash, verify_password
from evreserve.storage import keys
from evreserve.storage.codec import to_item
from evreserve.storage.registry import RegistryStore
from evreserve_gateway import Dependencies

pytestmark = pytest.mark.integration

OTHER_PASSWORD = "other-account-password-42"
V16 = OcppVersion.V16.subprotocol


async def _refusal(url: str) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, subprotocols=["ocpp1.6"], open_timeout=5):  # type: ignore[list-item]
            pass
    return refused.value


async def _status(url: str) -> int:
    return (await _refusal(url)).response.status_code


class HashChecks(list[str]):
    """A gateway's password check that counts its password hash checks (the costly part of a login)."""

    def __call__(self, password: str, stored: str) -> bool:
        self.append(password)
        return verify_password(password, stored)

    def inject(self, deps: Dependencies) -> Dependencies:
        return replace(deps, verify_password=self)


class RecordedLookups(RegistryStore):
    """A gateway's registry that records its charger lookups, and finds nothing."""

    def __init__(self, client: Any, table: str) -> None:
        super().__init__(client, table)
        self.reads: list[str] = []

    def get_charger_by_ocpp_id(self, ocpp_id: str) -> Charger | None:
        self.reads.append(ocpp_id)
        return None


@pytest.fixture
def hash_checks() -> HashChecks:
    """Counts the gateway's password hash checks; inject it with ``start_gateway(inject=hash_checks.inject)``."""
    return HashChecks()


# -- identities that cannot be a charger ----------------------------------------------------


@pytest.mark.parametrize(
    "encoded",
    [
        "x" * 49,  # over OCPP 2.0.1's 48 characters
        "RDAM%20123",  # a blank
        "caf%C3%A9",  # non-ASCII
        "CP%E2%80%AE1",  # a bidi override
        "CP%001",  # NUL
        "CP%0D%0A1",  # CR LF
        "a%2Fb",  # an encoded slash
        "CP'%3B--",  # quote and semicolon
        "%FF%FE",  # not UTF-8
    ],
)
async def test_odd_identities_get_404_without_a_lookup(start_gateway, gateway_clients, registry, encoded):
    """Identities outside OCPP's identifierString (or over 48 characters) are refused before any registry read."""
    lookups = RecordedLookups(gateway_clients.dynamodb, registry.table)
    gateway = await start_gateway(inject=lambda deps: replace(deps, registry=lookups))
    reads = lookups.reads
    assert await _status(f"ws://x:y@127.0.0.1:{gateway.port}/ocpp/{encoded}") == 404
    assert reads == []


async def test_identity_of_48_characters_is_accepted(gateway, seed_charger, registry):
    """The longest identity OCPP allows connects."""
    charger = seed_charger(ocpp_id=f"L{registry.next_id('long')}-".ljust(48, "x"))
    async with charger_session(gateway, charger):
        await wait_held(gateway, charger, registry)


# -- one identity, one account ----------------------------------------------------------------


async def test_another_accounts_credentials_do_not_open_a_charger(gateway, seed_charger):
    """A charger of account 2 cannot open account 1's identity, neither under its own name nor with its password."""
    ours = seed_charger(account_id=1)
    theirs = seed_charger(account_id=2, password_hash=hash_password(OTHER_PASSWORD))
    assert await _status(charger_url(gateway, ours.ocpp_id, OTHER_PASSWORD, user=theirs.ocpp_id)) == 401
    assert await _status(charger_url(gateway, ours.ocpp_id, OTHER_PASSWORD)) == 401
    async with connect(charger_url(gateway, theirs.ocpp_id, OTHER_PASSWORD), subprotocols=["ocpp1.6"]):  # type: ignore[list-item]
        pass


async def test_an_identity_cannot_be_registered_by_a_second_account(seed_charger):
    """ocppId is global: another account cannot register (and so cannot set a password for) a taken identity."""
    ours = seed_charger(account_id=1)
    with pytest.raises(AlreadyExists):
        seed_charger(account_id=2, ocpp_id=ours.ocpp_id, password_hash=hash_password(OTHER_PASSWORD))


async def test_a_pointer_to_another_charger_admits_nobody(gateway, seed_charger, registry):
    """An identity whose pointer names a charger with another ocppId is unknown, even to that charger's credentials."""
    real = seed_charger()
    ghost = f"GHOST-{real.id}"
    registry._client.put_item(
        TableName=registry.table,
        Item={**keys.ocpp_id(ghost), **to_item({"chargerId": real.id, "accountId": real.account_id})},
    )
    url = f"ws://{quote(real.ocpp_id)}:{PASSWORD}@127.0.0.1:{gateway.port}/ocpp/{ghost}"
    assert await _status(url) == 404


@pytest.mark.parametrize("field", ["account_id", "charger_id"])
async def test_command_for_another_account_never_reaches_the_charger(gateway, seed_charger, registry, commands, field):
    """A command naming a held identity but another account's (or charger's) ids ends offline, not sent."""
    charger = seed_charger(account_id=1)
    behaviour = Behaviour()
    async with charger_session(gateway, charger, OcppVersion.V16, behaviour):
        await wait_held(gateway, charger, registry)
        command = commands.command(charger, OcppVersion.V16).model_copy(update={field: 999_999})
        outcome = await commands.execute(command, gateway.queue_url)
    assert outcome.kind is OutcomeKind.OFFLINE
    assert behaviour.received == []


# -- throttled guessing -----------------------------------------------------------------------


async def test_repeated_failures_lock_the_identity_without_a_hash_check(
    start_gateway, seed_charger, registry, hash_checks
):
    """After the free failures an identity answers 429 + Retry-After, even to the right password, with no hash check."""
    gateway = await start_gateway(
        inject=hash_checks.inject,
        gateway_login_failures_per_identity=2,
        gateway_login_lockout_base_s=1.0,
        gateway_login_failures_per_address=0,
    )
    charger = seed_charger()
    for _ in range(3):  # the two free failures, and the one that starts the lock
        assert await _status(charger_url(gateway, charger.ocpp_id, "wrong-password-123")) == 401
    assert len(hash_checks) == 3
    locked = await _refusal(charger_url(gateway, charger.ocpp_id, PASSWORD))
    assert locked.response.status_code == 429
    assert locked.response.headers["Retry-After"] == "1"
    assert len(hash_checks) == 3
    await asyncio.sleep(1.1)
    async with charger_session(gateway, charger):
        await wait_held(gateway, charger, registry)


async def test_lockout_grows_with_each_further_failure(start_gateway, seed_charger):
    """Each failure after a lock doubles the next one."""
    gateway = await start_gateway(
        gateway_login_failures_per_identity=1, gateway_login_lockout_base_s=0.3, gateway_login_failures_per_address=0
    )
    charger = seed_charger()
    wrong = charger_url(gateway, charger.ocpp_id, "wrong-password-123")
    assert await _status(wrong) == 401  # the free one
    assert await _status(wrong) == 401  # locked 0.3 s
    await asyncio.sleep(0.35)
    assert await _status(wrong) == 401  # locked 0.6 s
    await asyncio.sleep(0.35)
    assert await _status(charger_url(gateway, charger.ocpp_id, PASSWORD)) == 429


async def test_parallel_guesses_get_one_hash_check_at_a_time(start_gateway, seed_charger, hash_checks):
    """Guesses fired in parallel at one identity cannot all be checked before the lock starts."""
    gateway = await start_gateway(
        inject=hash_checks.inject, gateway_login_failures_per_identity=3, gateway_login_failures_per_address=0
    )
    charger = seed_charger()
    statuses = await asyncio.gather(
        *(_status(charger_url(gateway, charger.ocpp_id, f"guess-{n:04d}-password")) for n in range(20))
    )
    assert set(statuses) <= {401, 429}
    assert len(hash_checks) <= 4  # the three free failures and the one that locks


async def test_failures_from_one_address_lock_the_address(start_gateway, seed_charger, hash_checks):
    """Unknown identities and wrong passwords from one address lock it, for every identity."""
    gateway = await start_gateway(
        inject=hash_checks.inject, gateway_login_failures_per_address=3, gateway_login_lockout_base_s=5.0
    )
    first, second = seed_charger(), seed_charger()
    assert await _status(f"ws://x:y@127.0.0.1:{gateway.port}/ocpp/NOPE-{first.id}") == 404
    assert await _status(f"ws://x:y@127.0.0.1:{gateway.port}/ocpp/NOPE-{second.id}") == 404
    assert await _status(charger_url(gateway, first.ocpp_id, "wrong-password-123")) == 401
    assert await _status(charger_url(gateway, second.ocpp_id, "wrong-password-456")) == 401  # the fourth locks
    checked = len(hash_checks)
    assert await _status(charger_url(gateway, second.ocpp_id, PASSWORD)) == 429
    assert len(hash_checks) == checked


# -- secrets stay out of the logs ---------------------------------------------------------------


async def test_passwords_never_reach_the_logs(start_gateway, seed_charger, registry, caplog):
    """Right and wrong passwords, plain or as the Basic header, appear in no log record, even at DEBUG."""
    caplog.set_level(logging.DEBUG)
    gateway = await start_gateway(gateway_login_failures_per_identity=2)
    charger = seed_charger()
    wrong = "wrong-password-7f3a9"
    for _ in range(3):
        await _status(charger_url(gateway, charger.ocpp_id, wrong))
    other = seed_charger()
    async with charger_session(gateway, other):
        await wait_held(gateway, other, registry)
    secrets = [PASSWORD, wrong]
    secrets += [base64.b64encode(f"{c.ocpp_id}:{p}".encode()).decode() for c in (charger, other) for p in secrets]
    logged = caplog.text + "".join(str(vars(r)) for r in caplog.records)
    assert "refused a charger's credentials" in logged
    assert [s for s in secrets if s in logged] == []


async def test_two_authorization_headers_are_refused_and_counted(start_gateway, seed_charger):
    """Two Authorization headers on an upgrade (the right password among them) are 401, not a 500, and
    count as a failed login toward the lockout."""
    gateway = await start_gateway(
        gateway_login_failures_per_identity=1, gateway_login_lockout_base_s=30.0, gateway_login_failures_per_address=0
    )
    charger = seed_charger()
    right = "Basic " + base64.b64encode(f"{charger.ocpp_id}:{PASSWORD}".encode()).decode()
    url = f"ws://127.0.0.1:{gateway.port}/ocpp/{quote(charger.ocpp_id, safe='')}"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            url, subprotocols=["ocpp1.6"], additional_headers=[("Authorization", right), ("Authorization", right)]
        ):  # type: ignore[list-item]
            pass
    assert refused.value.response.status_code == 401
    assert await _status(url.replace("ws://", f"ws://{charger.ocpp_id}:wrong-password-123@")) == 401  # locks
    assert await _status(charger_url(gateway, charger.ocpp_id, PASSWORD)) == 429


async def test_a_former_scrypt_hash_becomes_argon2id_at_the_next_login(gateway, seed_charger, registry):
    """A charger whose password was stored with scrypt logs in; its hash is then Argon2id, and it still logs in
    (OWASP's current guidance, reached without asking operators to reset passwords)."""
    charger = seed_charger(password_hash=scrypt_hash(PASSWORD))
    async with connect(charger_url(gateway, charger.ocpp_id), subprotocols=[V16]):  # type: ignore[list-item]
        pass
    stored = await wait_until(
        lambda: (h := registry.get_charger(charger.id).password_hash).startswith("$argon2id$") and h,
        what="the Argon2id hash",
    )
    assert verify_password(PASSWORD, stored) and not needs_rehash(stored)
    # The remembered login was bound to the old hash: this one checks the new hash itself.
    async with connect(charger_url(gateway, charger.ocpp_id), subprotocols=[V16]):  # type: ignore[list-item]
        pass
