"""What the gateway writes into a charger's registry item while it is connected.

Connection and disconnection, port status, boot info: each write is conditional, so an
older connection (or a dead instance's leftovers) can never overwrite a newer one.
``RegistryStore`` is these plus the charger's own records.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from ..aws import ClientError, error_code, unavailable_on_transport_errors
from ..errors import DependencyUnavailable, NotFound, StaleWrite
from ..models import BootInfo, Connection, ConnectionState, OcppStatus
from ..resources import BY_INSTANCE, CONNECTED_TO
from . import keys
from .base import is_condition_failure
from .codec import from_item, serialize
from .items import boot_data, connection_data, connection_from, iso, ocpp_status_data, port_status_key
from .registry_table import RegistryTable


def epoch_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


#: Pauses before writing again a live update that met a transaction on the charger item.
#: A reserve or cancel checks the charger item inside its command's transaction
#: (``RegistryStore.unchanged_request``), and DynamoDB rejects a plain write to an item an
#: ongoing transaction holds (TransactionConflictException) for the few milliseconds it
#: lasts. Each write made again is conditional on what it replaces (an older status or
#: boot never overwrites a newer one, a disconnection names its session), so a late second
#: write cannot undo a newer one; the connection's registration is not made again.
CONFLICT_PAUSES_S = (0.02, 0.05, 0.1, 0.2)


def _met_a_transaction(error: DependencyUnavailable) -> bool:
    cause = error.__cause__
    return isinstance(cause, ClientError) and error_code(cause) == "TransactionConflictException"


class LiveChargerState(RegistryTable):
    def _update(
        self, key: dict[str, Any], expression: str, condition: str, *, again: bool = True, **kwargs: Any
    ) -> dict[str, Any]:
        """One conditional UpdateItem; met a transaction, written again after ``CONFLICT_PAUSES_S``
        (``again=False``: the caller answers that itself). Runs off the gateway's event loop."""
        pauses = iter(CONFLICT_PAUSES_S if again else ())
        while True:
            try:
                with unavailable_on_transport_errors(self.service):
                    answer = self._client.update_item(
                        TableName=self._table,
                        Key=key,
                        UpdateExpression=expression,
                        ConditionExpression=condition,
                        **kwargs,
                    )
                break
            except DependencyUnavailable as error:
                pause = next(pauses, None)
                if pause is None or not _met_a_transaction(error):
                    raise
                time.sleep(pause)
        attributes: dict[str, Any] = answer.get("Attributes") or {}
        return attributes

    def register_connection(self, charger_id: int, connection: Connection) -> Connection | None:
        """Record that ``connection`` now holds the charger, unless a newer one already does.

        Returns the connection it replaced (the instance holding that one is told to
        close it), if any. Raises ``StaleWrite`` when a connection that started later is
        registered, and ``NotFound`` when the charger was deleted meanwhile.
        """
        try:
            # Not written again on a conflict: the same connection written late could mark a
            # charger connected after its disconnection was stored. A connecting charger is
            # asked to come back instead (the gateway's 1013).
            replaced = self._update(
                keys.charger(charger_id),
                "SET #c = :c, connectionEpochMs = :e, #to = :i",
                "attribute_exists(pk) AND (attribute_not_exists(connectionEpochMs) OR connectionEpochMs <= :e)",
                ExpressionAttributeNames={"#c": "connection", "#to": CONNECTED_TO},
                ExpressionAttributeValues={
                    ":c": serialize(connection_data(connection)),
                    ":e": {"N": str(epoch_ms(connection.timestamp))},
                    ":i": {"S": connection.instance_id},
                },
                ReturnValues="UPDATED_OLD",
                again=False,
            )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            if self._get(keys.charger(charger_id)) is None:
                raise NotFound("charger not found", charger_id=charger_id) from exc
            raise StaleWrite("a newer connection holds this charger", charger_id=charger_id) from exc
        old = from_item(replaced).get("connection")
        return connection_from(old) if isinstance(old, dict) else None

    def register_disconnection(self, charger_id: int, session_id: str, at: datetime) -> bool:
        """Mark the charger disconnected if ``session_id`` is still its connection; False if not."""
        return self._disconnect(charger_id, at, "#c.sessionId = :who", session_id)

    def release_instance(self, charger_id: int, instance_id: str, at: datetime) -> bool:
        """Mark the charger disconnected if a (dead) instance still holds it; False if not.

        A charger that reconnected elsewhere meanwhile names the other instance: untouched.
        """
        return self._disconnect(charger_id, at, "#c.instanceId = :who", instance_id)

    def _disconnect(self, charger_id: int, at: datetime, condition: str, who: str) -> bool:
        try:
            self._update(
                keys.charger(charger_id),
                "SET #c.#s = :s, #c.#t = :t REMOVE #to",
                condition,
                ExpressionAttributeNames={"#c": "connection", "#s": "state", "#t": "timestamp", "#to": CONNECTED_TO},
                ExpressionAttributeValues={
                    ":s": {"S": ConnectionState.DISCONNECTED.value},
                    ":t": {"S": iso(at)},
                    ":who": {"S": who},
                },
            )
        except ClientError as exc:
            if is_condition_failure(exc):
                return False
            raise
        return True

    def chargers_on_instance(self, instance_id: str) -> list[int]:
        """The chargers the registry places on a gateway instance (index ``byInstance``)."""
        return [keys.charger_id_of(item) for item in self._query_all(BY_INSTANCE, CONNECTED_TO, instance_id)]

    def record_port_status(self, charger_id: int, port_number: int, status: OcppStatus) -> None:
        """Store a StatusNotification; an older report never overwrites a newer one."""
        try:
            self._update(
                keys.charger(charger_id),
                "SET portStatus.#n = :s",
                "attribute_exists(pk) AND (attribute_not_exists(portStatus.#n) OR portStatus.#n.#t <= :t)",
                ExpressionAttributeNames={"#n": port_status_key(port_number, status.connector_id), "#t": "timestamp"},
                ExpressionAttributeValues={
                    ":s": serialize(ocpp_status_data(status)),
                    ":t": {"S": iso(status.timestamp)},
                },
            )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            raise StaleWrite("a newer status is stored", charger_id=charger_id, port_number=port_number) from exc

    def upgrade_password_hash(self, charger_id: int, old: str, new: str) -> bool:
        """Replace a charger's password hash by a stronger one of the same password, unless it changed meanwhile.

        Not a registry change (``updatedAt`` stays): the same password, stored better.
        """
        try:
            self._update(
                keys.charger(charger_id),
                "SET passwordHash = :new",
                "attribute_exists(pk) AND passwordHash = :old",
                ExpressionAttributeValues={":new": {"S": new}, ":old": {"S": old}},
            )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            return False
        return True

    def record_boot(self, charger_id: int, boot: BootInfo) -> None:
        """Store a BootNotification; an older one never overwrites a newer one (a write made again
        after a conflict may come after a newer boot's)."""
        try:
            self._update(
                keys.charger(charger_id),
                "SET boot = :b",
                "attribute_exists(pk) AND (attribute_not_exists(boot) OR boot.#t <= :t)",
                ExpressionAttributeNames={"#t": "timestamp"},
                ExpressionAttributeValues={":b": serialize(boot_data(boot)), ":t": {"S": iso(boot.timestamp)}},
            )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            if self._get(keys.charger(charger_id)) is None:
                raise NotFound("charger not found", charger_id=charger_id) from exc

    # -- the API's reads, listings and changes ---------------------------------------
