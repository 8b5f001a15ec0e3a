"""Access IDs in the registry table, in their account's partition (layout: ``storage.keys``).

The record is addressed by its idTag, casefolded, so that the gateway answers an
``Authorize`` with one GetItem and an idTag is unique in its account whatever its case
(the put's condition). A second item maps the access ID's number, which the API uses, to
that idTag; both are written and deleted in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from ..access_ids import AccessId, tag_key
from ..errors import AccessIdExists, Conflict
from ..resources import PK, SK
from . import keys
from .base import ConditionsFailed, transact
from .codec import from_item, to_item
from .items import iso
from .paging import Key, Page, iter_query, read_page
from .registry_table import RegistryTable

#: A PATCH that loses a race to another one reads again and re-applies, this many times.
_UPDATE_ATTEMPTS = 5


def access_id_item(entry: AccessId) -> dict[str, Any]:
    key = keys.access_id_by_tag(entry.account_id, tag_key(entry.ocpp_id_tag))
    return {
        PK: key[PK]["S"],
        SK: key[SK]["S"],
        "accessId": entry.access_id,
        "accountId": entry.account_id,
        "ocppIdTag": entry.ocpp_id_tag,
        "type": entry.type.value,
        "authorizationStatus": entry.authorization_status.value,
        "parentIdTag": entry.parent_id_tag,
        # The group's lookup form, for the parentIdTag filter.
        "parentKey": tag_key(entry.parent_id_tag) if entry.parent_id_tag is not None else None,
        "name": entry.name,
        "createdAt": iso(entry.created_at),
        "updatedAt": iso(entry.updated_at),
    }


def access_id_from(item: dict[str, Any]) -> AccessId:
    data = from_item(item)
    return AccessId(
        access_id=data["accessId"],
        account_id=data["accountId"],
        ocpp_id_tag=data["ocppIdTag"],
        type=data["type"],
        authorization_status=data["authorizationStatus"],
        parent_id_tag=data.get("parentIdTag"),
        name=data.get("name"),
        created_at=data["createdAt"],
        updated_at=data["updatedAt"],
    )


class AccessIdStore(RegistryTable):
    def new_id(self) -> int:
        return self.next_id("access-id")

    def create(self, entry: AccessId) -> None:
        pointer = keys.access_id_pointer(entry.account_id, entry.access_id)
        try:
            transact(
                self._client,
                [
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": to_item(access_id_item(entry)),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": {**pointer, "ocppIdTag": {"S": entry.ocpp_id_tag}},
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ],
                self.service,
            )
        except ConditionsFailed as exc:
            if 0 in exc.items:
                raise AccessIdExists(
                    f"This account has an access ID for ocppIdTag {entry.ocpp_id_tag!r} already",
                    field="ocppIdTag",
                ) from exc
            raise  # a fresh number is never taken: a broken sequence is a bug, not a 409

    def by_tag(self, account_id: int, id_tag: str, *, consistent: bool = True) -> AccessId | None:
        item = self._get(keys.access_id_by_tag(account_id, tag_key(id_tag)), consistent)
        return access_id_from(item) if item else None

    def get(self, account_id: int, access_id: int) -> AccessId | None:
        pointer = self._get(keys.access_id_pointer(account_id, access_id))
        if pointer is None:
            return None
        entry = self.by_tag(account_id, str(from_item(pointer)["ocppIdTag"]))
        # A pointer whose record is gone (a delete between the two reads) is no access ID.
        return entry if entry is not None and entry.access_id == access_id else None

    def _account_items(
        self, account_id: int, parent_id_tag: str | None, start: Key | None, size: int
    ) -> Iterator[tuple[AccessId, Key]]:
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {
                ":pk": {"S": keys.access_ids_pk(account_id)},
                ":prefix": {"S": keys.ID_TAG_SK_PREFIX},
            },
            "ConsistentRead": True,
        }
        if parent_id_tag is not None:
            query["FilterExpression"] = "parentKey = :parent"
            query["ExpressionAttributeValues"][":parent"] = {"S": tag_key(parent_id_tag)}
        for item, key in iter_query(self._client, start=start, page_size=size, **query):
            yield access_id_from(item), key

    def page(
        self, account_id: int, *, limit: int, cursor: str | None, parent_id_tag: str | None = None
    ) -> Page[AccessId]:
        """The account's access IDs in idTag order; ``parent_id_tag``: only that group's members."""
        return read_page(
            lambda start, size: self._account_items(account_id, parent_id_tag, start, size),
            partition={PK: keys.access_ids_pk(account_id)},
            limit=limit,
            cursor=cursor,
            selective=parent_id_tag is not None,
        )

    def update(
        self, account_id: int, access_id: int, change: Callable[[AccessId], AccessId], now: datetime
    ) -> AccessId | None:
        """Apply ``change`` to the stored access ID (``None``: there is none); a concurrent change is re-read."""
        for _ in range(_UPDATE_ATTEMPTS):
            current = self.get(account_id, access_id)
            if current is None:
                return None
            changed = change(current).model_copy(update={"updated_at": now})
            try:
                transact(
                    self._client,
                    [
                        {
                            "Put": {
                                "TableName": self._table,
                                "Item": to_item(access_id_item(changed)),
                                "ConditionExpression": "accessId = :id AND updatedAt = :seen",
                                "ExpressionAttributeValues": {
                                    ":id": {"N": str(access_id)},
                                    ":seen": {"S": iso(current.updated_at)},
                                },
                            }
                        }
                    ],
                    self.service,
                )
            except ConditionsFailed:
                continue
            return changed
        raise Conflict("The access ID is being changed by other requests; try again")

    def delete(self, account_id: int, access_id: int) -> bool:
        """Remove it; whether it existed."""
        entry = self.get(account_id, access_id)
        if entry is None:
            return False
        record = keys.access_id_by_tag(account_id, tag_key(entry.ocpp_id_tag))
        try:
            transact(
                self._client,
                [
                    {
                        "Delete": {
                            "TableName": self._table,
                            "Key": record,
                            "ConditionExpression": "accessId = :id",
                            "ExpressionAttributeValues": {":id": {"N": str(access_id)}},
                        }
                    },
                    {"Delete": {"TableName": self._table, "Key": keys.access_id_pointer(account_id, access_id)}},
                ],
                self.service,
            )
        except ConditionsFailed:
            return False  # deleted by a concurrent request
        return True
