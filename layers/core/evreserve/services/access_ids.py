"""Access IDs as the API shows them: an account's drivers' tokens and their groups.

Only a key of the whole account manages them: a token may charge at any of the
account's chargers, so a key limited to some chargers could otherwise grant or revoke
access at the others.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ..access_ids import AccessId, tag_key
from ..errors import NotFound
from ..requests import AccessIdChanges, NewAccessId
from ..storage.access_ids import AccessIdStore
from ..storage.paging import Page
from .principal import Principal


class AccessIdService:
    def __init__(self, store: AccessIdStore, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock

    def create(self, principal: Principal, request: NewAccessId) -> AccessId:
        account_id = principal.require_whole_account()
        now = self._clock()
        entry = AccessId(
            access_id=self._store.new_id(),
            account_id=account_id,
            ocpp_id_tag=request.ocpp_id_tag,
            type=request.type,
            authorization_status=request.authorization_status,
            parent_id_tag=request.parent_id_tag,
            name=request.name or None,
            created_at=now,
            updated_at=now,
        )
        self._store.create(entry)
        return entry

    def list(
        self,
        principal: Principal,
        limit: int,
        cursor: str | None,
        *,
        ocpp_id_tag: str | None = None,
        parent_id_tag: str | None = None,
    ) -> Page[AccessId]:
        account_id = principal.require_whole_account()
        if ocpp_id_tag is not None:
            # Unique in the account: the answer is that one (if it is in the group asked for) or none.
            entry = self._store.by_tag(account_id, ocpp_id_tag)
            matches = entry is not None and (
                parent_id_tag is None
                or (entry.parent_id_tag is not None and tag_key(entry.parent_id_tag) == tag_key(parent_id_tag))
            )
            return Page([entry] if matches and entry is not None else [], None)
        return self._store.page(account_id, limit=limit, cursor=cursor, parent_id_tag=parent_id_tag)

    def get(self, principal: Principal, access_id: int) -> AccessId:
        entry = self._store.get(principal.require_whole_account(), access_id)
        if entry is None:
            raise NotFound("Access ID not found")
        return entry

    def update(self, principal: Principal, access_id: int, changes: AccessIdChanges) -> AccessId:
        account_id = principal.require_whole_account()
        values = {name: getattr(changes, name) for name in changes.given}

        def change(current: AccessId) -> AccessId:
            return current.model_copy(update=values)

        updated = self._store.update(account_id, access_id, change, self._clock())
        if updated is None:
            raise NotFound("Access ID not found")
        return updated

    def delete(self, principal: Principal, access_id: int) -> None:
        if not self._store.delete(principal.require_whole_account(), access_id):
            raise NotFound("Access ID not found")
