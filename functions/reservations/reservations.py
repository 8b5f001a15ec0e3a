"""The reservation API: reserve and cancel ports (exactly as the public spec), read records."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Header, Path, Query
from aws_lambda_powertools.metrics import MetricUnit

from evreserve.models import INT32_MAX, ReservationState, utcnow
from evreserve.services.reservations import ReservationFilter
from evreserve_lambda.app import caller, create_app, lambda_handler, metrics, services, tracer
from evreserve_lambda.openapi import CHARGER, errors
from evreserve_lambda.params import Cursor, Limit
from evreserve_lambda.responses import (
    CancelResponse,
    CancelResult,
    Pagination,
    ReservationList,
    ReservationResponse,
    ReservationView,
    ReserveResponse,
    ReserveResult,
)
from evreserve_lambda.schemas import CancelRequest, ReserveRequest

app = create_app()

#: The caller's own name for a request: the same key gets the same answer for 24 h without a
#: second command to the charger (and the same key with another body is 409 IDEMPOTENCY_CONFLICT).
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=64,
        pattern=r"^[\x21-\x7e]+$",
        description="Optional. The same key gets the first answer for 24 h, with no second command to the charger.",
    ),
]

_CHARGER_ERRORS = errors(
    *CHARGER,
    descriptions={
        409: "CHARGER_OFFLINE: the charger is not connected; RESERVATION_ID_CONFLICT: the id is active on another port"
    },
)


@app.post(
    "/api/ocpp/reservations",
    summary="Reserve a charging port",
    description=(
        "Sends ReserveNow to the port's charger and answers with the charger's status. Extension: `chargerId`"
        " instead of `portId` (exactly one of the two, else 400) reserves the charger as a whole (1.6"
        " connectorId 0, 2.0.1 ReserveNow without evseId); the record shows `portId: null` until the charger"
        " marks a port Reserved for it or a transaction uses it on a port."
    ),
    tags=["Reservations"],
    responses=_CHARGER_ERRORS,
)
@tracer.capture_method
def reserve(request: ReserveRequest, idempotency_key: IdempotencyKey = None) -> ReserveResponse:
    status = services().reservations.reserve(caller(app), request.to_domain(), idempotency_key)
    metrics.add_metric(name=f"Reserve{status.value}", unit=MetricUnit.Count, value=1)
    return ReserveResponse(data=ReserveResult(status=status))


@app.post(
    "/api/ocpp/reservations/cancel",
    summary="Cancel a reservation",
    description="Sends CancelReservation to the charger and answers with the charger's status.",
    tags=["Reservations"],
    responses=errors(*CHARGER, descriptions={409: "CHARGER_OFFLINE: the charger is not connected"}),
)
@tracer.capture_method
def cancel(request: CancelRequest, idempotency_key: IdempotencyKey = None) -> CancelResponse:
    status = services().reservations.cancel(caller(app), request.to_domain(), idempotency_key)
    metrics.add_metric(name=f"Cancel{status.value}", unit=MetricUnit.Count, value=1)
    return CancelResponse(data=CancelResult(status=status))


@app.get(
    "/api/ocpp/reservations",
    summary="List reservations",
    description="The caller's reservations in reservationId order; expired ones show as Expired.",
    tags=["Reservations"],
    responses=errors(),
)
@tracer.capture_method
def list_reservations(
    charger_id: Annotated[int | None, Query(alias="chargerId", ge=1, le=INT32_MAX)] = None,
    port_id: Annotated[int | None, Query(alias="portId", ge=1, le=INT32_MAX)] = None,
    status: Annotated[ReservationState | None, Query()] = None,
    active: Annotated[bool | None, Query()] = None,
    limit: Limit = 50,
    next_page_cursor: Cursor = None,
) -> ReservationList:
    where = ReservationFilter(charger_id=charger_id, port_id=port_id, status=status, active=active)
    page = services().reservations.list_reservations(caller(app), where, limit, next_page_cursor)
    now = utcnow()
    return ReservationList(
        data=[ReservationView.of(r, now) for r in page.items],
        pagination=Pagination(has_next_page=page.next_cursor is not None, next_page_cursor=page.next_cursor),
    )


@app.get(
    "/api/ocpp/reservations/<reservationId>",
    summary="Read a reservation",
    tags=["Reservations"],
    responses=errors(),
)
@tracer.capture_method
def get_reservation(
    reservation_id: Annotated[int, Path(alias="reservationId", ge=0, le=INT32_MAX)],
) -> ReservationResponse:
    record = services().reservations.get(caller(app), reservation_id)
    return ReservationResponse(data=ReservationView.of(record, utcnow()))


#: The routes that send a command: their rate count rides the command's transaction.
COMMAND_ROUTES = frozenset({("POST", "/api/ocpp/reservations"), ("POST", "/api/ocpp/reservations/cancel")})

handler: Any = lambda_handler(app, commands=COMMAND_ROUTES)
