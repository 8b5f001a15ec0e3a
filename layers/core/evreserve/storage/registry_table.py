"""What the registry table's two stores share: id sequences, create-once writes, paged index reads.

The table holds accounts and API keys (``AccountStore``) and chargers with their
ports and pointers (``RegistryStore``); both list through the same index (``gsi1``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ..aws import ClientError, unavailable_on_transport_errors
from ..errors import AlreadyExists
from ..resources import GSI1_PK
from . import keys
from .base import DynamoStore, is_condition_failure
from .codec import to_item
from .paging import Key, Page, read_page

T = TypeVar("T")


class RegistryTable(DynamoStore):
    """What the registry table's stores (``RegistryStore``, ``AccountStore``) share."""

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

    def _page_index(
        self,
        partition: str,
        decode: Callable[[dict[str, Any]], T],
        *,
        limit: int,
        cursor: str | None,
        keep: Callable[[T], bool] | None = None,
        selective: bool = False,
    ) -> Page[T]:
        def source(start: Key | None, size: int) -> Iterator[tuple[T, Key]]:
            for item, key in self._query_index(partition, start, size):
                yield decode(item), key

        return read_page(
            source,
            partition={GSI1_PK: partition},
            limit=limit,
            cursor=cursor,
            keep=keep or (lambda _item: True),
            selective=selective,
        )
