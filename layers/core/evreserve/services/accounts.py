"""Accounts and their API keys, and authenticating a key."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ..errors import AlreadyExists, InvalidRequest, NotFound, QuotaExceeded, Unauthorized
from ..models import Account, ApiKey, utcnow
from ..requests import AccountChanges, NewAccount, NewApiKey
from ..security import api_key_matches, generate_api_key, hash_api_key
from ..storage.accounts import AccountStore
from ..storage.paging import Page
from ..storage.registry import RegistryStore
from .principal import Principal

#: Key id of the platform admin key the local run (or a deployment's secret) seeds.
ADMIN_KEY_ID = "admin"

_BEARER = "bearer "


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: ApiKey
    #: The key itself, shown once.
    secret: str


def bearer_token(authorization: str | None) -> str:
    """The key in an ``Authorization: Bearer {key}`` header; anything else is 401."""
    if not authorization or not authorization[: len(_BEARER)].lower() == _BEARER:
        raise Unauthorized("Invalid API key")
    token = authorization[len(_BEARER) :].strip()
    if not token or len(token) > 200:
        raise Unauthorized("Invalid API key")
    return token


def ensure_admin_key(accounts: AccountStore, key: str, clock: Callable[[], datetime] = utcnow) -> ApiKey:
    """Make ``key`` a platform admin key (idempotent): the local run's ``ADMIN_API_KEY``."""
    api_key = ApiKey(
        key_id=ADMIN_KEY_ID, key_hash=hash_api_key(key), name="platform admin", account_id=None, created_at=clock()
    )
    try:
        accounts.put_api_key(api_key)
    except AlreadyExists:
        existing = accounts.get_api_key(api_key.key_hash)
        if existing is not None:
            return existing
        raise
    return api_key


class AccountService:
    def __init__(
        self,
        accounts: AccountStore,
        registry: RegistryStore,
        clock: Callable[[], datetime] = utcnow,
        max_keys: int = 100,
    ) -> None:
        self._accounts = accounts
        #: API keys per account (``AccountSettings.max_api_keys_per_account``).
        self._max_keys = max_keys
        #: Only to check that a key's chargers belong to its account.
        self._registry = registry
        self._clock = clock

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization`` header; ``Unauthorized`` when unknown."""
        token = bearer_token(authorization)
        key = self._accounts.get_api_key(hash_api_key(token))
        # The table found the item by the hash; the match is confirmed here in constant
        # time, so no decision rests on a comparison whose timing follows the secret.
        if key is None or not api_key_matches(token, key.key_hash):
            raise Unauthorized("Invalid API key")
        return Principal.of(key)

    def create_account(self, principal: Principal, request: NewAccount) -> Account:
        principal.require_admin()
        account = Account(id=self._accounts.next_id("account"), name=request.name, created_at=self._clock())
        self._accounts.create_account(account)
        return account

    def list_accounts(self, principal: Principal, limit: int, cursor: str | None) -> Page[Account]:
        principal.require_admin()
        return self._accounts.page_accounts(limit=limit, cursor=cursor)

    def get_account(self, principal: Principal, account_id: int) -> Account:
        return self._account(principal, account_id)

    def update_account(self, principal: Principal, account_id: int, changes: AccountChanges) -> Account:
        """Rename (the admin only) or set the policy for unregistered tokens (the admin or the owner)."""
        self._account(principal, account_id)
        if changes.name is not None:
            principal.require_admin()
        updated = self._accounts.update_account(account_id, name=changes.name, unknown_id_tags=changes.unknown_id_tags)
        if updated is None:
            raise NotFound("Account not found")
        return updated

    def _account(self, principal: Principal, account_id: int) -> Account:
        principal.require_admin_or_owner(account_id)
        account = self._accounts.get_account(account_id)
        if account is None:
            raise NotFound("Account not found")
        return account

    def create_api_key(self, principal: Principal, account_id: int, request: NewApiKey) -> IssuedKey:
        account = self._account(principal, account_id)
        charger_ids = tuple(sorted(set(request.charger_ids))) if request.charger_ids is not None else None
        for charger_id in charger_ids or ():
            charger = self._registry.get_charger(charger_id)
            if charger is None or charger.account_id != account.id:
                raise InvalidRequest(f"charger {charger_id} is not a charger of this account", field="chargerIds")
        existing = sum(1 for _ in self._accounts.api_keys(account.id))
        if existing >= self._max_keys:
            raise QuotaExceeded(f"This account has {existing} API keys, the most it may have; delete one first")
        secret, key_id, key_hash = generate_api_key()
        key = ApiKey(
            key_id=key_id,
            key_hash=key_hash,
            name=request.name,
            account_id=account.id,
            charger_ids=charger_ids,
            created_at=self._clock(),
        )
        self._accounts.put_api_key(key)
        return IssuedKey(key, secret)

    def list_api_keys(self, principal: Principal, account_id: int, limit: int, cursor: str | None) -> Page[ApiKey]:
        self._account(principal, account_id)
        return self._accounts.page_api_keys(account_id, limit=limit, cursor=cursor)

    def delete_api_key(self, principal: Principal, account_id: int, key_id: str) -> None:
        """Revoke a key. Authorizer results are cached, so it may work for a few more minutes."""
        self._account(principal, account_id)
        for key in self._accounts.api_keys(account_id):
            if key.key_id == key_id:
                self._accounts.delete_api_key(key)
                return
        raise NotFound("API key not found")
