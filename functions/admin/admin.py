"""Accounts and API keys (the platform admin, and owners for their own keys); the OpenAPI document."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path

from evreserve.models import INT32_MAX
from evreserve_lambda.app import caller, create_app, lambda_handler, no_content, services, tracer
from evreserve_lambda.openapi import bundled_document, errors
from evreserve_lambda.params import Cursor, Limit
from evreserve_lambda.responses import (
    AccountList,
    AccountResponse,
    AccountView,
    ApiKeyCreated,
    ApiKeyCreatedResponse,
    ApiKeyList,
    ApiKeyView,
    Pagination,
)
from evreserve_lambda.schemas import AccountCreate, AccountUpdate, ApiKeyCreate

app = create_app()

AccountId = Annotated[int, Path(alias="accountId", ge=1, le=INT32_MAX)]


@app.post(
    "/api/admin/accounts",
    summary="Create an account (platform admin)",
    tags=["Admin"],
    status_code=201,
    responses=errors(ok=201),
)
@tracer.capture_method
def create_account(request: AccountCreate) -> AccountResponse:
    account = services().accounts.create_account(caller(app), request.to_domain())
    return AccountResponse(data=AccountView.of(account))


@app.get("/api/admin/accounts", summary="List accounts (platform admin)", tags=["Admin"], responses=errors())
@tracer.capture_method
def list_accounts(limit: Limit = 50, next_page_cursor: Cursor = None) -> AccountList:
    page = services().accounts.list_accounts(caller(app), limit, next_page_cursor)
    return AccountList(
        data=[AccountView.of(a) for a in page.items],
        pagination=Pagination(has_next_page=page.next_cursor is not None, next_page_cursor=page.next_cursor),
    )


@app.get(
    "/api/admin/accounts/<accountId>",
    summary="Get an account",
    description="Platform admin, or an unlimited key of the same account.",
    tags=["Admin"],
    responses=errors(),
)
@tracer.capture_method
def get_account(account_id: AccountId) -> AccountResponse:
    return AccountResponse(data=AccountView.of(services().accounts.get_account(caller(app), account_id)))


@app.patch(
    "/api/admin/accounts/<accountId>",
    summary="Change an account",
    description=(
        "`unknownIdTags`: what chargers are told about a token the account has not registered as an access ID:"
        " `Accepted` (the default: anyone may charge) or `Invalid` (only registered tokens, and the reserved"
        " token of an active reservation, may). The platform admin or an unlimited key of the same account may"
        " set it; only the admin may rename the account. Chargers follow within 30 s."
    ),
    tags=["Admin"],
    responses=errors(),
)
@tracer.capture_method
def update_account(account_id: AccountId, request: AccountUpdate) -> AccountResponse:
    account = services().accounts.update_account(caller(app), account_id, request.to_domain())
    return AccountResponse(data=AccountView.of(account))


@app.post(
    "/api/admin/accounts/<accountId>/api-keys",
    summary="Create an API key",
    description=(
        "Platform admin, or an unlimited key of the same account. The key is shown in this response only."
        " An account has at most MAX_API_KEYS_PER_ACCOUNT keys (100 by default): one more is 409 QUOTA_EXCEEDED."
    ),
    tags=["Admin"],
    status_code=201,
    responses=errors(409, ok=201, descriptions={409: "The account has as many keys as it may (QUOTA_EXCEEDED)"}),
)
# Not capture_response: the answer carries a secret shown once, and the tracer would
# copy it into the trace's metadata.
@tracer.capture_method(capture_response=False)
def create_api_key(account_id: AccountId, request: ApiKeyCreate) -> ApiKeyCreatedResponse:
    issued = services().accounts.create_api_key(caller(app), account_id, request.to_domain())
    view = ApiKeyView.of(issued.key).model_dump()
    return ApiKeyCreatedResponse(data=ApiKeyCreated(**view, api_key=issued.secret))


@app.get(
    "/api/admin/accounts/<accountId>/api-keys",
    summary="List an account's API keys (never the keys themselves)",
    tags=["Admin"],
    responses=errors(),
)
@tracer.capture_method
def list_api_keys(account_id: AccountId, limit: Limit = 50, next_page_cursor: Cursor = None) -> ApiKeyList:
    page = services().accounts.list_api_keys(caller(app), account_id, limit, next_page_cursor)
    return ApiKeyList(
        data=[ApiKeyView.of(k) for k in page.items],
        pagination=Pagination(has_next_page=page.next_cursor is not None, next_page_cursor=page.next_cursor),
    )


@app.delete(
    "/api/admin/accounts/<accountId>/api-keys/<keyId>",
    summary="Revoke an API key",
    description="Authorizer results are cached for up to 5 minutes, so a revoked key may work that long.",
    tags=["Admin"],
    status_code=204,
    responses=errors(ok=204),
)
@tracer.capture_method
def delete_api_key(account_id: AccountId, key_id: Annotated[str, Path(alias="keyId", max_length=64)]) -> Response[str]:
    services().accounts.delete_api_key(caller(app), account_id, key_id)
    return no_content()


@app.get("/api/openapi.json", summary="This API's OpenAPI document", tags=["Meta"], responses=errors())
def openapi_document() -> dict[str, Any]:
    caller(app)  # any valid key may read it
    return bundled_document()


handler: Any = lambda_handler(app)
