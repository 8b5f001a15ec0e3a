"""The webhook routes' responses (the envelopes: ``responses``)."""

from __future__ import annotations

from datetime import datetime

from evreserve.events import EventType
from evreserve.webhooks import DeliveryRecord, DeliveryStatus, Webhook

from .responses import Data, Page
from .schemas import ApiModel


class WebhookView(ApiModel):
    """A webhook; never its secret, which only its creation shows."""

    id: str
    url: str
    events: list[EventType]
    description: str | None
    created_at: datetime

    @classmethod
    def of(cls, webhook: Webhook) -> WebhookView:
        return cls(
            id=webhook.webhook_id,
            url=webhook.url,
            events=list(webhook.events),
            description=webhook.description,
            created_at=webhook.created_at,
        )


class WebhookCreated(WebhookView):
    """The new webhook; ``secret`` signs its deliveries and is shown this once."""

    secret: str


class WebhookDeliveryView(ApiModel):
    """One delivery attempt: ``retrying`` (failed, will be tried again), ``delivered`` or ``failed`` (given up)."""

    event_id: str
    type: str
    attempt: int
    status: DeliveryStatus
    #: The receiver's HTTP status; null when none came (timeout, connection refused, address not allowed).
    response_status: int | None
    #: Why the attempt failed; null when it was delivered.
    error: str | None
    at: datetime

    @classmethod
    def of(cls, record: DeliveryRecord) -> WebhookDeliveryView:
        return cls(
            event_id=record.event_id,
            type=record.event_type,
            attempt=record.attempt,
            status=record.status,
            response_status=record.response_status,
            error=record.error,
            at=record.at,
        )


class WebhookResponse(Data[WebhookView]):
    pass


class WebhookCreatedResponse(Data[WebhookCreated]):
    pass


class WebhookList(Page[WebhookView]):
    pass


class WebhookDeliveryList(Page[WebhookDeliveryView]):
    pass
