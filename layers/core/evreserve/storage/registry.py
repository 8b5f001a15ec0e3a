"""The registry: accounts, API keys, chargers and their ports, and what chargers report.

Reads here serve the API functions and the gateway alike; the live writes (connection,
port status, boot info) are the gateway's, each conditional so that an older
connection can never overwrite a newer one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from ..aws import error_code, unavailable_on_transport_errors
from ..errors import AlreadyExists, NotFound, StaleWrite
from ..models import Account, ApiKey, BootInfo, Charger, Connection, ConnectionState, OcppStatus
from ..resources import GSI1, GSI1_PK
from . import keys
from .base import DynamoStore, cancellation_reasons, is_condition_failure
from .codec import from_item, serialize, to_item
from .items import (
    account_from,
    account_item,
    api_key_from,
    api_key_item,
    boot_data,
    charger_from,
    charger_item,
    connection_data,
    iso,
    ocpp_status_data,
    port_data,
)
from .paging import Key, iter_query


@dataclass(frozen=True, slots=True)
class PortRef:
    """What a port id resolves to without reading its charger."""

    port_id: int
    charger_id: int
    account_id: int
    port_number: int


def epoch_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


class RegistryStore(DynamoStore):
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

    def get_api_key(self, key_hash: str) -> ApiKey | None:
        item = self._get(keys.api_key(key_hash))
        return api_key_from(item) if item else None

    def get_account(self, account_id: int) -> Account | None:
        item = self._get(keys.account(account_id))
        return account_from(item) if item else None

    # -- creation --------------------------------------------------------------------

    def next_id(self, sequence: str) -> int:
        """The next integer of a named sequence (``charger``, ``port``, ``account``)."""
        with unavailable_on_transport_errors(self.service):
            answer = self._client.update_item(
                TableName=self._table,
                Key=keys.counter(sequence),
                UpdateExpression="ADD #v :one",
                ExpressionAttributeNames={"#v": "value"},
                ExpressionAttributeValues={":one": {"N": "1"}},
                ReturnValues="UPDATED_NEW",
            )
        return int(answer["Attributes"]["value"]["N"])

    def create_account(self, account: Account) -> None:
        self._put_new(account_item(account))

    def put_api_key(self, key: ApiKey) -> None:
        self._put_new(api_key_item(key))

    def _put_new(self, item: dict[str, Any]) -> None:
        try:
            with unavailable_on_transport_errors(self.service):
                self._client.put_item(
                    TableName=self._table, Item=to_item(item), ConditionExpression="attribute_not_exists(pk)"
                )
        except ClientError as exc:
            if is_condition_failure(exc):
                raise AlreadyExists("already exists") from exc
            raise

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
        try:
            with unavailable_on_transport_errors(self.service):
                self._client.transact_write_items(TransactItems=items)  # type: ignore[arg-type]
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            reasons = cancellation_reasons(exc)
            for field, reason in zip(fields, reasons, strict=False):
                if reason == "ConditionalCheckFailed":
                    raise AlreadyExists(f"{field} is already registered", field=field) from exc
            raise

    # -- live writes from the gateway -----------------------------------------------

    def _update(self, key: dict[str, Any], expression: str, condition: str, **kwargs: Any) -> None:
        with unavailable_on_transport_errors(self.service):
            self._client.update_item(
                TableName=self._table, Key=key, UpdateExpression=expression, ConditionExpression=condition, **kwargs
            )

    def register_connection(self, charger_id: int, connection: Connection) -> None:
        """Record that ``connection`` now holds the charger, unless a newer one already does.

        Raises ``StaleWrite`` when a connection that started later is registered, and
        ``NotFound`` when the charger was deleted meanwhile.
        """
        try:
            self._update(
                keys.charger(charger_id),
                "SET #c = :c, connectionEpochMs = :e",
                "attribute_exists(pk) AND (attribute_not_exists(connectionEpochMs) OR connectionEpochMs <= :e)",
                ExpressionAttributeNames={"#c": "connection"},
                ExpressionAttributeValues={
                    ":c": serialize(connection_data(connection)),
                    ":e": {"N": str(epoch_ms(connection.timestamp))},
                },
            )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            if self._get(keys.charger(charger_id)) is None:
                raise NotFound("charger not found", charger_id=charger_id) from exc
            raise StaleWrite("a newer connection holds this charger", charger_id=charger_id) from exc

    def register_disconnection(self, charger_id: int, session_id: str, at: datetime) -> bool:
        """Mark the charger disconnected if ``session_id`` is still its connection; False if not."""
        try:
            self._update(
                keys.charger(charger_id),
                "SET #c.#s = :s, #c.#t = :t",
                "#c.sessionId = :sid",
                ExpressionAttributeNames={"#c": "connection", "#s": "state", "#t": "timestamp"},
                ExpressionAttributeValues={
                    ":s": {"S": ConnectionState.DISCONNECTED.value},
                    ":t": {"S": iso(at)},
                    ":sid": {"S": session_id},
                },
            )
        except ClientError as exc:
            if is_condition_failure(exc):
                return False
            raise
        return True

    def record_port_status(self, charger_id: int, port_number: int, status: OcppStatus) -> None:
        """Store a StatusNotification; an older report never overwrites a newer one."""
        try:
            self._update(
                keys.charger(charger_id),
                "SET portStatus.#n = :s",
                "attribute_exists(pk) AND (attribute_not_exists(portStatus.#n) OR portStatus.#n.#t <= :t)",
                ExpressionAttributeNames={"#n": str(port_number), "#t": "timestamp"},
                ExpressionAttributeValues={
                    ":s": serialize(ocpp_status_data(status)),
                    ":t": {"S": iso(status.timestamp)},
                },
            )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            raise StaleWrite("a newer status is stored", charger_id=charger_id, port_number=port_number) from exc

    def record_boot(self, charger_id: int, boot: BootInfo) -> None:
        try:
            self._update(
                keys.charger(charger_id),
                "SET boot = :b",
                "attribute_exists(pk)",
                ExpressionAttributeValues={":b": serialize(boot_data(boot))},
            )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            raise NotFound("charger not found", charger_id=charger_id) from exc

    # -- the API's reads, listings and changes ---------------------------------------

    def charger_id_for_external_id(self, account_id: int, external_id: str) -> int | None:
        item = self._get(keys.external_id(account_id, external_id))
        return int(from_item(item)["chargerId"]) if item else None

    def _iter_index(self, partition: str, start: Key | None, page_size: int) -> Iterator[tuple[dict[str, Any], Key]]:
        return iter_query(
            self._client,
            start=start,
            page_size=page_size,
            TableName=self._table,
            IndexName=GSI1,
            KeyConditionExpression="#p = :p",
            ExpressionAttributeNames={"#p": GSI1_PK},
            ExpressionAttributeValues={":p": {"S": partition}},
        )

    def iter_chargers(
        self, account_id: int, start: Key | None = None, page_size: int = 50
    ) -> Iterator[tuple[Charger, Key]]:
        """An account's chargers in id order, each with the key that resumes after it."""
        for item, key in self._iter_index(keys.chargers_index_pk(account_id), start, page_size):
            yield charger_from(item), key

    def iter_accounts(self, start: Key | None = None, page_size: int = 50) -> Iterator[tuple[Account, Key]]:
        for item, key in self._iter_index(keys.accounts_index()[0], start, page_size):
            yield account_from(item), key

    def iter_api_keys(
        self, account_id: int, start: Key | None = None, page_size: int = 50
    ) -> Iterator[tuple[ApiKey, Key]]:
        for item, key in self._iter_index(keys.api_keys_index_pk(account_id), start, page_size):
            yield api_key_from(item), key

    def delete_api_key(self, key: ApiKey) -> None:
        with unavailable_on_transport_errors(self.service):
            self._client.delete_item(TableName=self._table, Key=keys.api_key(key.key_hash))

    def _transact(self, items: list[dict[str, Any]], fields: list[str]) -> None:
        """Run a transaction; a failed condition raises ``AlreadyExists`` / ``NotFound`` per ``fields``.

        ``fields[i]`` names what item ``i`` guards: ``"charger"`` (it changed or vanished
        meanwhile) or the unique attribute its pointer claims.
        """
        try:
            with unavailable_on_transport_errors(self.service):
                self._client.transact_write_items(TransactItems=items)  # type: ignore[arg-type]
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            for field, reason in zip(fields, cancellation_reasons(exc), strict=False):
                if reason != "ConditionalCheckFailed":
                    continue
                if field == "charger":
                    raise StaleWrite("the charger changed meanwhile; read it again and retry") from exc
                raise AlreadyExists(f"{field} is already registered", field=field) from exc
            raise

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
        registry_fields: dict[str, Any] = {
            "externalId": after.external_id,
            "serialNumber": after.serial_number,
            "ocppVersion": after.ocpp_version.value if after.ocpp_version else None,
            "passwordHash": after.password_hash,
            "allowNoPassword": after.allow_no_password,
            "ports": [port_data(p) for p in after.ports],
            "updatedAt": iso(after.updated_at),
        }
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
