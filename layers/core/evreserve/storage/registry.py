"""The registry's chargers and their ports, and what chargers report (accounts and keys: ``accounts``).

Reads here serve the API functions and the gateway alike; the live writes (connection,
port status, boot info) are the gateway's, each conditional so that an older
connection can never overwrite a newer one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import AlreadyExists, NotFound, StaleWrite
from ..models import Charger, ConnectionState
from . import keys
from .base import ConditionsFailed, transact
from .codec import from_item, serialize, to_item
from .items import (
    CHARGER_REGISTRY_FIELDS,
    charger_from,
    charger_item,
    iso,
)
from .live import LiveChargerState
from .paging import Page

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PortRef:
    """What a port id resolves to without reading its charger."""

    port_id: int
    charger_id: int
    account_id: int
    port_number: int


class RegistryStore(LiveChargerState):
    # -- reads shared by the API and the gateway ----------------------------------

    def get_charger(self, charger_id: int) -> Charger | None:
        item = self._get(keys.charger(charger_id))
        return charger_from(item) if item else None

    def charger_id_for_ocpp_id(self, ocpp_id: str) -> int | None:
        item = self._get(keys.ocpp_id(ocpp_id))
        return int(from_item(item)["chargerId"]) if item else None

    def get_charger_by_ocpp_id(self, ocpp_id: str) -> Charger | None:
        charger_id = self.charger_id_for_ocpp_id(ocpp_id)
        return self.get_charger(charger_id) if charger_id is not None else None

    def get_port_ref(self, port_id: int) -> PortRef | None:
        item = self._get(keys.port(port_id))
        if not item:
            return None
        data = from_item(item)
        return PortRef(port_id, int(data["chargerId"]), int(data["accountId"]), int(data["portNumber"]))

    def unchanged_request(self, charger: Charger) -> dict[str, Any]:
        """A transaction ``ConditionCheck`` that ``charger`` (a connected one, as read) still stands.

        Its registry fields (``updatedAt``: ``update_charger`` moves it with every change,
        ``delete_charger`` takes it away) and its live connection (the same session on the
        same instance and queue, still connected: an instance whose queue came back under
        another URL registers its sessions again with it) are what a command to it relies
        on; port status and boot info are not.
        It lets a warm API function skip the charger's read and still never send a command
        on a charger that changed since.
        """
        assert charger.connection is not None
        return {
            "ConditionCheck": {
                "TableName": self._table,
                "Key": keys.charger(charger.id),
                "ConditionExpression": "#u = :u AND #c.#s = :s AND #c.#i = :i AND #c.#q = :q AND #c.#st = :connected",
                "ExpressionAttributeNames": {
                    "#u": "updatedAt",
                    "#c": "connection",
                    "#s": "sessionId",
                    "#i": "instanceId",
                    "#q": "queueUrl",
                    "#st": "state",
                },
                "ExpressionAttributeValues": {
                    ":u": {"S": iso(charger.updated_at)},
                    ":s": {"S": charger.connection.session_id},
                    ":i": {"S": charger.connection.instance_id},
                    ":q": {"S": charger.connection.queue_url},
                    ":connected": {"S": ConnectionState.CONNECTED.value},
                },
            }
        }

    # -- creation --------------------------------------------------------------------

    def _pointer(self, key: keys.Key, **attributes: Any) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._table,
                "Item": {**key, **to_item(attributes)},
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    def create_charger(self, charger: Charger) -> None:
        """Create a charger with its ports and its unique ocppId / externalId, all or nothing.

        Raises ``AlreadyExists`` naming the field (``ocppId`` / ``externalId``) that is taken.
        """
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": to_item(charger_item(charger)),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            self._pointer(keys.ocpp_id(charger.ocpp_id), chargerId=charger.id, accountId=charger.account_id),
        ]
        fields = ["id", "ocppId"]
        if charger.external_id is not None:
            items.append(
                self._pointer(
                    keys.external_id(charger.account_id, charger.external_id),
                    chargerId=charger.id,
                    accountId=charger.account_id,
                )
            )
            fields.append("externalId")
        for port in charger.ports:
            items.append(
                self._pointer(
                    keys.port(port.id), chargerId=charger.id, accountId=charger.account_id, portNumber=port.port_number
                )
            )
            fields.append("portId")
        self._transact(items, fields)

    def charger_id_for_external_id(self, account_id: int, external_id: str) -> int | None:
        item = self._get(keys.external_id(account_id, external_id))
        return int(from_item(item)["chargerId"]) if item else None

    def page_chargers(
        self,
        account_id: int,
        *,
        limit: int,
        cursor: str | None,
        keep: Callable[[Charger], bool] | None = None,
        selective: bool = False,
    ) -> Page[Charger]:
        """An account's chargers in id order, one page."""
        partition = keys.chargers_index_pk(account_id)
        return self._page_index(partition, charger_from, limit=limit, cursor=cursor, keep=keep, selective=selective)

    def _transact(self, items: list[dict[str, Any]], fields: list[str]) -> None:
        """Run a transaction; a failed condition raises ``AlreadyExists`` / ``StaleWrite`` per ``fields``.

        ``fields[i]`` names what item ``i`` guards: ``"charger"`` (it changed or vanished
        meanwhile) or the unique attribute its pointer claims.
        """
        try:
            transact(self._client, items, self.service)
        except ConditionsFailed as failure:
            field = fields[min(failure.items)]
            if field == "charger":
                raise StaleWrite("the charger changed meanwhile; read it again and retry") from failure
            raise AlreadyExists(f"{field} is already registered", field=field) from failure

    def _release(self, key: keys.Key, charger_id: int) -> dict[str, Any]:
        """A transaction ``Delete`` of a pointer, only while it still points at this charger."""
        return {
            "Delete": {
                "TableName": self._table,
                "Key": key,
                "ConditionExpression": "chargerId = :c",
                "ExpressionAttributeValues": {":c": {"N": str(charger_id)}},
            }
        }

    def update_charger(self, before: Charger, after: Charger) -> None:
        """Write the registry fields of ``after`` (never the live ones the gateway owns).

        Conditional on ``updatedAt`` still being ``before``'s, so two concurrent updates
        cannot lose each other's changes; the gateway's writes (connection, port status,
        boot) touch neither ``updatedAt`` nor these fields, so updating a connected
        charger is safe. Pointers for a changed externalId and added/removed ports move
        in the same transaction. Raises ``StaleWrite`` or ``AlreadyExists``.
        """
        item = charger_item(after)
        registry_fields: dict[str, Any] = {name: item.get(name) for name in CHARGER_REGISTRY_FIELDS}
        names: dict[str, str] = {}
        values: dict[str, Any] = {":prev": {"S": iso(before.updated_at)}}
        sets: list[str] = []
        removes: list[str] = []
        for i, (name, value) in enumerate(registry_fields.items()):
            names[f"#a{i}"] = name
            if value is None:
                removes.append(f"#a{i}")
            else:
                values[f":v{i}"] = serialize(value)
                sets.append(f"#a{i} = :v{i}")
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": keys.charger(before.id),
                    "UpdateExpression": expression,
                    "ConditionExpression": "attribute_exists(pk) AND #u = :prev",
                    "ExpressionAttributeNames": {**names, "#u": "updatedAt"},
                    "ExpressionAttributeValues": values,
                }
            }
        ]
        fields = ["charger"]
        owner = {"chargerId": before.id, "accountId": before.account_id}
        if before.external_id != after.external_id:
            if before.external_id is not None:
                items.append(self._release(keys.external_id(before.account_id, before.external_id), before.id))
                fields.append("charger")
            if after.external_id is not None:
                items.append(self._pointer(keys.external_id(after.account_id, after.external_id), **owner))
                fields.append("externalId")
        old_ports = {p.id: p for p in before.ports}
        new_ports = {p.id: p for p in after.ports}
        for port_id in old_ports.keys() - new_ports.keys():
            items.append(self._release(keys.port(port_id), before.id))
            fields.append("charger")
        for port_id, port in new_ports.items():
            if port_id not in old_ports:
                items.append(self._pointer(keys.port(port_id), portNumber=port.port_number, **owner))
                fields.append("portId")
            elif old_ports[port_id].port_number != port.port_number:
                items.append(
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": {**keys.port(port_id), **to_item({"portNumber": port.port_number, **owner})},
                            "ConditionExpression": "chargerId = :c",
                            "ExpressionAttributeValues": {":c": {"N": str(before.id)}},
                        }
                    }
                )
                fields.append("charger")
        self._transact(items, fields)

    def delete_charger(self, charger: Charger) -> None:
        """Delete a charger with all its pointers, all or nothing.

        The gateway's live writes are conditional on the charger existing, so a charger
        deleted while connected just stops being updated.
        """
        items: list[dict[str, Any]] = [
            {
                "Delete": {
                    "TableName": self._table,
                    "Key": keys.charger(charger.id),
                    "ConditionExpression": "attribute_exists(pk)",
                }
            },
            self._release(keys.ocpp_id(charger.ocpp_id), charger.id),
        ]
        if charger.external_id is not None:
            items.append(self._release(keys.external_id(charger.account_id, charger.external_id), charger.id))
        items.extend(self._release(keys.port(p.id), charger.id) for p in charger.ports)
        try:
            self._transact(items, ["charger"] * len(items))
        except StaleWrite as exc:
            raise NotFound("charger not found", charger_id=charger.id) from exc
