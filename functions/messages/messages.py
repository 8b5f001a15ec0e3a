"""The OCPP message log: every CALL a charger sent or was sent, with its answer, newest first."""

from datetime import datetime
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Query

from evreserve.messagelog import DEFAULT_LIMIT, MAX_LIMIT
from evreserve.models import INT32_MAX
from evreserve_lambda.app import caller, create_app, lambda_handler, services, tracer
from evreserve_lambda.openapi import errors
from evreserve_lambda.params import Cursor
from evreserve_lambda.responses import OcppMessageList, OcppMessageView, Pagination

app = create_app()

ActionName = Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9]+$")]


@app.get(
    "/api/ocpp-messages",
    summary="List a charger's OCPP messages",
    description=(
        "Every CALL the charger sent and every CALL sent to it, each with its answer (the CALLRESULT "
        "payload; a CALLERROR as `{errorCode, errorDescription, errorDetails}`; `null` if none came in "
        "time), newest first. The range defaults to the last 24 h and must be under 8 days. "
        "`messageType` (or `messageType[]`, repeated) keeps the given OCPP actions. Messages appear "
        "within the gateways' flush interval (5 minutes by default; docs/api.md)."
    ),
    tags=["OCPP messages"],
    responses=errors(),
)
@tracer.capture_method
def list_messages(
    charger_id: Annotated[int, Query(alias="chargerId", ge=1, le=INT32_MAX)],
    start_timestamp: Annotated[datetime | None, Query(alias="startTimestamp")] = None,
    end_timestamp: Annotated[datetime | None, Query(alias="endTimestamp")] = None,
    message_type: Annotated[list[ActionName] | None, Query(alias="messageType")] = None,
    message_types: Annotated[list[ActionName] | None, Query(alias="messageType[]")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    next_page_cursor: Cursor = None,
) -> OcppMessageList:
    page = services().messages.list(
        caller(app),
        charger_id,
        start=start_timestamp,
        end=end_timestamp,
        types=[*(message_type or ()), *(message_types or ())],
        limit=limit,
        cursor=next_page_cursor,
    )
    return OcppMessageList(
        data=[OcppMessageView.of(m, charger_id) for m in page.items],
        pagination=Pagination(
            has_next_page=page.next_position is not None,
            next_page_cursor=page.next_position.encode() if page.next_position else None,
        ),
    )


handler: Any = lambda_handler(app)
