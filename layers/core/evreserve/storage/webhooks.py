"""Webhooks and their delivery logs, in the webhooks table (layout: ``storage.keys``).

An account's webhooks share its partition, so the publisher reads them with one strongly
consistent Query (a webhook created a moment ago gets the next event). Each webhook's
delivery log is a partition of its own, one item per attempt, kept
``retention_days`` by the table's TTL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..aws import ClientError, unavailable_on_transport_errors
from ..errors import AlreadyExists
from ..resources import PK, SK, TTL_ATTRIBUTE
from ..webhooks import DeliveryRecord, Webhook
from . import keys
from .base import DynamoStore, is_condition_failure
from .codec import from_item, to_item
from .items import iso
from .paging import Key, Page, iter_query, read_page

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def webhook_item(webhook: Webhook) -> dict[str, Any]:
    key = keys.webhook(webhook.account_id, webhook.webhook_id)
    return {
        PK: key[PK]["S"],
        SK: key[SK]["S"],
        "webhookId": webhook.webhook_id,
        "accountId": webhook.account_id,
        "url": webhook.url,
        "events": [kind.value for kind in webhook.events],
        "description": webhook.description,
        "secret": webhook.secret,
        "createdAt": iso(webhook.created_at),
    }


def webhook_from(item: dict[str, Any]) -> Webhook:
    data = from_item(item)
    return Webhook(
        webhook_id=data["webhookId"],
        account_id=data["accountId"],
        url=data["url"],
        events=tuple(data["events"]),
        description=data.get("description"),
        secret=data["secret"],
        created_at=data["createdAt"],
    )


def _record_from(item: dict[str, Any]) -> DeliveryRecord:
    data = from_item(item)
    return DeliveryRecord(
        event_id=data["eventId"],
        event_type=data["type"],
        attempt=data["attempt"],
        status=data["status"],
        response_status=data.get("responseStatus"),
        error=data.get("error"),
        at=data["at"],
    )


class WebhookStore(DynamoStore):
    def __init__(self, client: DynamoDBClient, table: str, retention_days: int = 30) -> None:
        super().__init__(client, table)
        self._retention_s = retention_days * 86400

    def create(self, webhook: Webhook) -> None:
        try:
            with unavailable_on_transport_errors(self.service):
                self._client.put_item(
                    TableName=self._table,
                    Item=to_item(webhook_item(webhook)),
                    ConditionExpression="attribute_not_exists(pk)",
                )
        except ClientError as exc:
            if is_condition_failure(exc):
                raise AlreadyExists("a webhook with this id exists") from exc
            raise

    def get(self, account_id: int, webhook_id: str) -> Webhook | None:
        with unavailable_on_transport_errors(self.service):
            answer = self._client.get_item(
                TableName=self._table, Key=keys.webhook(account_id, webhook_id), ConsistentRead=True
            )
        item = answer.get("Item")
        return webhook_from(item) if item else None

    def _account_items(self, account_id: int, start: Key | None, size: int) -> Iterator[tuple[Webhook, Key]]:
        for item, key in iter_query(
            self._client,
            start=start,
            page_size=size,
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={
                ":pk": {"S": keys.webhooks_pk(account_id)},
                ":prefix": {"S": keys.WEBHOOK_SK_PREFIX},
            },
            ConsistentRead=True,
        ):
            yield webhook_from(item), key

    def of_account(self, account_id: int) -> list[Webhook]:
        """Every webhook of the account, as of now (a strongly consistent read)."""
        return [webhook for webhook, _ in self._account_items(account_id, None, 100)]

    def page(self, account_id: int, *, limit: int, cursor: str | None) -> Page[Webhook]:
        return read_page(
            lambda start, size: self._account_items(account_id, start, size),
            partition={PK: keys.webhooks_pk(account_id)},
            limit=limit,
            cursor=cursor,
        )

    def delete(self, account_id: int, webhook_id: str) -> bool:
        """Remove a webhook; whether it existed. Its log stays until its TTL; queued deliveries are dropped."""
        with unavailable_on_transport_errors(self.service):
            answer = self._client.delete_item(
                TableName=self._table, Key=keys.webhook(account_id, webhook_id), ReturnValues="ALL_OLD"
            )
        return bool(answer.get("Attributes"))

    def record(self, webhook_id: str, record: DeliveryRecord) -> None:
        """Add one attempt to the webhook's delivery log."""
        at_ms = int(record.at.timestamp() * 1000)
        item = {
            PK: keys.webhook_deliveries_pk(webhook_id),
            SK: keys.webhook_delivery_sk(at_ms, record.event_id, record.attempt),
            "eventId": record.event_id,
            "type": record.event_type,
            "attempt": record.attempt,
            "status": record.status.value,
            "responseStatus": record.response_status,
            "error": record.error,
            "at": iso(record.at),
            TTL_ATTRIBUTE: at_ms // 1000 + self._retention_s,
        }
        with unavailable_on_transport_errors(self.service):
            self._client.put_item(TableName=self._table, Item=to_item(item))

    def deliveries(self, webhook_id: str, *, limit: int, cursor: str | None) -> Page[DeliveryRecord]:
        """A page of the webhook's delivery log, newest first."""
        pk = keys.webhook_deliveries_pk(webhook_id)

        def source(start: Key | None, size: int) -> Iterator[tuple[DeliveryRecord, Key]]:
            for item, key in iter_query(
                self._client,
                start=start,
                page_size=size,
                TableName=self._table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": pk}},
                ScanIndexForward=False,
            ):
                yield _record_from(item), key

        return read_page(source, partition={PK: pk}, limit=limit, cursor=cursor)
