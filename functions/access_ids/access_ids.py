"""Access IDs: an account's drivers' tokens and their groups, which the gateway answers Authorize from."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from evreserve.models import INT32_MAX
from evreserve_lambda.app import caller, create_app, lambda_handler, no_content, services, tracer
from evreserve_lambda.openapi import errors
from evreserve_lambda.params import Cursor, Limit
from evreserve_lambda.responses import AccessIdList, AccessIdResponse, AccessIdView, Pagination
from evreserve_lambda.schemas import AccessIdCreate, AccessIdUpdate

app = create_app()

AccessIdNumber = Annotated[int, Path(alias="id", ge=1, le=INT32_MAX)]

_OWNER = (
    " Only a key of the whole account manages access IDs (a token may charge at every charger of the"
    " account): a key limited to some chargers gets 403, as does the admin key."
)
_ANSWERS = (
    " The gateway answers a charger's Authorize (and the idTag of 1.6 StartTransaction, 2.0.1"
    " TransactionEvent) from these: Authorized -> Accepted with the group (`parentIdTag`), Revoked ->"
    " Blocked; a token not registered gets what the account's `unknownIdTags` says (Accepted by default)."
    " A change reaches every charger within 30 s (the gateways' cache, GATEWAY_ACCESS_ID_CACHE_S)."
)


@app.post(
    "/api/access-ids",
    summary="Register a driver's token",
    description=(
        "`ocppIdTag` is unique in the account, compared without regard to case as OCPP does: a second one"
        " is 409 ACCESS_ID_EXISTS." + _ANSWERS + _OWNER
    ),
    tags=["Access IDs"],
    status_code=201,
    responses=errors(409, ok=201, descriptions={409: "The account has this ocppIdTag already (ACCESS_ID_EXISTS)"}),
)
@tracer.capture_method
def create_access_id(request: AccessIdCreate) -> AccessIdResponse:
    entry = services().access_ids.create(caller(app), request.to_domain())
    return AccessIdResponse(data=AccessIdView.of(entry))


@app.get(
    "/api/access-ids",
    summary="List the account's access IDs",
    description="In `ocppIdTag` order; `ocppIdTag` finds one (any case), `parentIdTag` lists a group." + _OWNER,
    tags=["Access IDs"],
    responses=errors(),
)
@tracer.capture_method
def list_access_ids(
    ocpp_id_tag: Annotated[str | None, Query(alias="ocppIdTag", min_length=1, max_length=20)] = None,
    parent_id_tag: Annotated[str | None, Query(alias="parentIdTag", min_length=1, max_length=20)] = None,
    limit: Limit = 50,
    next_page_cursor: Cursor = None,
) -> AccessIdList:
    page = services().access_ids.list(
        caller(app), limit, next_page_cursor, ocpp_id_tag=ocpp_id_tag, parent_id_tag=parent_id_tag
    )
    return AccessIdList(
        data=[AccessIdView.of(entry) for entry in page.items],
        pagination=Pagination(has_next_page=page.next_cursor is not None, next_page_cursor=page.next_cursor),
    )


@app.get(
    "/api/access-ids/<id>", summary="Get an access ID", description=_OWNER, tags=["Access IDs"], responses=errors()
)
@tracer.capture_method
def get_access_id(access_id: AccessIdNumber) -> AccessIdResponse:
    return AccessIdResponse(data=AccessIdView.of(services().access_ids.get(caller(app), access_id)))


@app.patch(
    "/api/access-ids/<id>",
    summary="Change an access ID",
    description=(
        "Any field but `ocppIdTag`; absent fields stay, `null` clears `parentIdTag` or `name`. Revoking"
        " (`authorizationStatus: Revoked`) makes chargers answer Blocked." + _ANSWERS + _OWNER
    ),
    tags=["Access IDs"],
    responses=errors(),
)
@tracer.capture_method
def update_access_id(access_id: AccessIdNumber, request: AccessIdUpdate) -> AccessIdResponse:
    entry = services().access_ids.update(caller(app), access_id, request.to_domain())
    return AccessIdResponse(data=AccessIdView.of(entry))


@app.delete(
    "/api/access-ids/<id>",
    summary="Delete an access ID",
    description="The token is then unknown: chargers are told what the account's `unknownIdTags` says." + _OWNER,
    tags=["Access IDs"],
    status_code=204,
    responses=errors(ok=204),
)
@tracer.capture_method
def delete_access_id(access_id: AccessIdNumber) -> Response[str]:
    services().access_ids.delete(caller(app), access_id)
    return no_content()


handler: Any = lambda_handler(app)
