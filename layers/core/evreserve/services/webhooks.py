"""Webhooks as the API shows them: an account owner's subscriptions and their delivery logs.

Only a key of the whole account manages webhooks: a webhook receives every reservation
of the account, so a key limited to some chargers could otherwise read the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ..errors import InvalidRequest, NotFound, QuotaExceeded
from ..storage.paging import Page
from ..storage.webhooks import WebhookStore
from ..webhooks import (
    MAX_DESCRIPTION_LENGTH,
    DeliveryRecord,
    NewWebhook,
    Webhook,
    check_events,
    check_url,
    new_secret,
    new_webhook_id,
)
from .principal import Principal


class WebhookService:
    def __init__(
        self,
        store: WebhookStore,
        clock: Callable[[], datetime],
        *,
        max_per_account: int,
        allow_local_http: bool,
    ) -> None:
        self._store = store
        self._clock = clock
        self._max = max_per_account
        self._allow_local_http = allow_local_http

    def create(self, principal: Principal, request: NewWebhook) -> Webhook:
        """A new webhook, with its secret (shown to the caller this once)."""
        account_id = principal.require_whole_account()
        url = check_url(request.url, allow_local_http=self._allow_local_http)
        events = check_events(request.events)
        if request.description is not None and len(request.description) > MAX_DESCRIPTION_LENGTH:
            raise InvalidRequest(f"description is longer than {MAX_DESCRIPTION_LENGTH} characters", field="description")
        existing = len(self._store.of_account(account_id))
        if existing >= self._max:
            raise QuotaExceeded(f"This account has {existing} webhooks, the most it may have; delete one first")
        webhook = Webhook(
            webhook_id=new_webhook_id(),
            account_id=account_id,
            url=url,
            events=events,
            description=request.description or None,
            secret=new_secret(),
            created_at=self._clock(),
        )
        self._store.create(webhook)
        return webhook

    def list(self, principal: Principal, limit: int, cursor: str | None) -> Page[Webhook]:
        return self._store.page(principal.require_whole_account(), limit=limit, cursor=cursor)

    def get(self, principal: Principal, webhook_id: str) -> Webhook:
        webhook = self._store.get(principal.require_whole_account(), webhook_id)
        if webhook is None:
            raise NotFound("Webhook not found")
        return webhook

    def delete(self, principal: Principal, webhook_id: str) -> None:
        """Remove it: deliveries still queued for it are dropped, its log is kept until it expires."""
        if not self._store.delete(principal.require_whole_account(), webhook_id):
            raise NotFound("Webhook not found")

    def deliveries(self, principal: Principal, webhook_id: str, limit: int, cursor: str | None) -> Page[DeliveryRecord]:
        webhook = self.get(principal, webhook_id)
        return self._store.deliveries(webhook.webhook_id, limit=limit, cursor=cursor)
