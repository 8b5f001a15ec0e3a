"""Webhooks: an account owner's subscriptions to its reservation events, and their delivery logs."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path

from evreserve_lambda.app import caller, create_app, lambda_handler, no_content, services, tracer
from evreserve_lambda.openapi import errors
from evreserve_lambda.params import Cursor, Limit
from evreserve_lambda.responses import Pagination
from evreserve_lambda.schemas import WebhookCreate
from evreserve_lambda.webhook_responses import (
    WebhookCreated,
    WebhookCreatedResponse,
    WebhookDeliveryList,
    WebhookDeliveryView,
    WebhookList,
    WebhookResponse,
    WebhookView,
)

app = create_app()

WebhookId = Annotated[str, Path(alias="webhookId", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_]+$")]

_OWNER = (
    " Only a key of the whole account may manage webhooks (a webhook receives every reservation of the"
    " account): a key limited to some chargers gets 403, as does the admin key."
)


@app.post(
    "/api/webhooks",
    summary="Subscribe a URL to reservation events",
    description=(
        "Every event of the given types (all by default) is POSTed to `url`, signed with `secret` "
        "(`Evreserve-Signature`), and retried with exponential backoff for at least 24 h until a 2xx "
        "comes within 10 s. `url` must be `https://` and must not point at a private, loopback or "
        "link-local address. `secret` is shown in this response only. An account has at most "
        "MAX_WEBHOOKS_PER_ACCOUNT webhooks (20 by default): one more is 409 QUOTA_EXCEEDED." + _OWNER
    ),
    tags=["Webhooks"],
    status_code=201,
    responses=errors(409, ok=201, descriptions={409: "The account has as many webhooks as it may (QUOTA_EXCEEDED)"}),
)
# Not capture_response: the answer carries the secret, which the trace must not keep.
@tracer.capture_method(capture_response=False)
def create_webhook(request: WebhookCreate) -> WebhookCreatedResponse:
    webhook = services().webhooks.create(caller(app), request.to_domain())
    view = WebhookView.of(webhook).model_dump()
    return WebhookCreatedResponse(data=WebhookCreated(**view, secret=webhook.secret))


@app.get(
    "/api/webhooks", summary="List the account's webhooks", description=_OWNER, tags=["Webhooks"], responses=errors()
)
@tracer.capture_method
def list_webhooks(limit: Limit = 50, next_page_cursor: Cursor = None) -> WebhookList:
    page = services().webhooks.list(caller(app), limit, next_page_cursor)
    return WebhookList(
        data=[WebhookView.of(w) for w in page.items],
        pagination=Pagination(has_next_page=page.next_cursor is not None, next_page_cursor=page.next_cursor),
    )


@app.get(
    "/api/webhooks/<webhookId>", summary="Get a webhook", description=_OWNER, tags=["Webhooks"], responses=errors()
)
@tracer.capture_method
def get_webhook(webhook_id: WebhookId) -> WebhookResponse:
    return WebhookResponse(data=WebhookView.of(services().webhooks.get(caller(app), webhook_id)))


@app.delete(
    "/api/webhooks/<webhookId>",
    summary="Delete a webhook",
    description="Deliveries still queued for it are dropped." + _OWNER,
    tags=["Webhooks"],
    status_code=204,
    responses=errors(ok=204),
)
@tracer.capture_method
def delete_webhook(webhook_id: WebhookId) -> Response[str]:
    services().webhooks.delete(caller(app), webhook_id)
    return no_content()


@app.get(
    "/api/webhooks/<webhookId>/deliveries",
    summary="A webhook's delivery log, newest first",
    description=(
        "One entry per attempt: `retrying` (it failed and will be tried again), `delivered` (a 2xx came "
        "within 10 s) or `failed` (given up after at least 24 h of retries). Kept 30 days." + _OWNER
    ),
    tags=["Webhooks"],
    responses=errors(),
)
@tracer.capture_method
def list_deliveries(webhook_id: WebhookId, limit: Limit = 50, next_page_cursor: Cursor = None) -> WebhookDeliveryList:
    page = services().webhooks.deliveries(caller(app), webhook_id, limit, next_page_cursor)
    return WebhookDeliveryList(
        data=[WebhookDeliveryView.of(r) for r in page.items],
        pagination=Pagination(has_next_page=page.next_cursor is not None, next_page_cursor=page.next_cursor),
    )


handler: Any = lambda_handler(app)
