"""Gateway instances' leases, in the registry table: who is alive, and where its queue is.

Each instance renews its lease every few seconds. One whose lease has lapsed (it was
killed, or lost its network) is reaped by any other: its chargers are marked
Disconnected (``LiveChargerState.release_instance``), its queue deleted, its lease item
removed. A reserve for one of those chargers then answers 409 CHARGER_OFFLINE at once,
instead of waiting out its deadline on a queue nobody reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ..aws import ClientError, unavailable_on_transport_errors
from . import keys
from .base import is_condition_failure
from .codec import from_item, to_item
from .registry_table import RegistryTable


@dataclass(frozen=True, slots=True)
class Lease:
    instance_id: str
    queue_url: str
    #: Until when the instance is taken to be alive (epoch milliseconds).
    until_ms: int

    def lapsed(self, now: datetime) -> bool:
        return self.until_ms < now.timestamp() * 1000


class InstanceStore(RegistryTable):
    def renew(self, lease: Lease) -> bool:
        """Write the lease; False when there was none before (first renewal, or reaped meanwhile)."""
        item = {
            **keys.instance_lease(lease.instance_id),
            **to_item(
                {
                    "gsi1pk": keys.INSTANCES_INDEX_PK,
                    "gsi1sk": lease.instance_id,
                    "instanceId": lease.instance_id,
                    "queueUrl": lease.queue_url,
                    "untilMs": lease.until_ms,
                }
            ),
        }
        with unavailable_on_transport_errors(self.service):
            answer = self._client.put_item(TableName=self._table, Item=item, ReturnValues="ALL_OLD")
        return bool(answer.get("Attributes"))

    def leases(self) -> list[Lease]:
        """Every instance's lease, lapsed or not."""
        found = []
        for item, _ in self._query_index(keys.INSTANCES_INDEX_PK, None, 100):
            data = from_item(item)
            found.append(Lease(str(data["instanceId"]), str(data["queueUrl"]), int(data["untilMs"])))
        return found

    def remove(self, lease: Lease) -> bool:
        """Delete the lease unless it was renewed since (the instance is alive after all)."""
        try:
            with unavailable_on_transport_errors(self.service):
                self._client.delete_item(
                    TableName=self._table,
                    Key=keys.instance_lease(lease.instance_id),
                    ConditionExpression="untilMs = :u",
                    ExpressionAttributeValues={":u": {"N": str(lease.until_ms)}},
                )
        except ClientError as exc:
            if is_condition_failure(exc):
                return False
            raise
        return True


def lease_until(now: datetime, lease_s: float) -> int:
    return int((now.astimezone(UTC).timestamp() + lease_s) * 1000)
