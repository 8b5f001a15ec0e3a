"""Who is calling: the API key's account and scope, as the authorizer established it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import Forbidden, Unauthorized
from ..models import ApiKey


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    #: ``None`` for the platform admin key.
    account_id: int | None
    #: ``None`` = every charger of the account.
    charger_ids: frozenset[int] | None = None

    @property
    def is_admin(self) -> bool:
        return self.account_id is None

    @classmethod
    def of(cls, key: ApiKey) -> Principal:
        ids = frozenset(key.charger_ids) if key.charger_ids is not None else None
        return cls(key_id=key.key_id, account_id=key.account_id, charger_ids=ids)

    def may_access_charger(self, account_id: int, charger_id: int) -> bool:
        if self.account_id is None or self.account_id != account_id:
            return False
        return self.charger_ids is None or charger_id in self.charger_ids

    def require_account(self) -> int:
        """The caller's account id; the admin key owns no chargers or reservations."""
        if self.account_id is None:
            raise Forbidden("The admin key manages accounts and keys; use an account's API key here")
        return self.account_id

    def require_whole_account(self) -> int:
        """The account id, for actions a key limited to some chargers may not take."""
        account_id = self.require_account()
        if self.charger_ids is not None:
            raise Forbidden("This API key is limited to some chargers and may not do this")
        return account_id

    def require_admin_or_owner(self, account_id: int) -> None:
        """Admin, or an unlimited key of ``account_id`` itself (an owner managing its keys)."""
        if self.is_admin:
            return
        if self.account_id != account_id or self.charger_ids is not None:
            raise Forbidden("Only the platform admin or an unlimited key of this account may do this")

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("Only the platform admin key may do this")

    # -- the authorizer context (API Gateway passes string values only) ----------------

    def to_context(self) -> dict[str, str]:
        return {
            "keyId": self.key_id,
            "accountId": "" if self.account_id is None else str(self.account_id),
            "isAdmin": "true" if self.is_admin else "false",
            "chargerIds": json.dumps(sorted(self.charger_ids) if self.charger_ids is not None else None),
        }

    @classmethod
    def from_context(cls, context: dict[str, Any] | None) -> Principal:
        """Rebuild the principal from the authorizer's context; anything malformed is 401."""
        if not context or not context.get("keyId"):
            raise Unauthorized("Invalid API key")
        try:
            raw_account = str(context.get("accountId") or "")
            is_admin = str(context.get("isAdmin", "false")).lower() == "true"
            account_id = None if is_admin else int(raw_account)
            ids = json.loads(str(context.get("chargerIds") or "null"))
            charger_ids = frozenset(int(i) for i in ids) if ids is not None else None
        except (ValueError, TypeError) as exc:
            raise Unauthorized("Invalid API key") from exc
        return cls(key_id=str(context["keyId"]), account_id=account_id, charger_ids=charger_ids)
