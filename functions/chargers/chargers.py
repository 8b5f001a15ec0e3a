"""The charger registry: chargers and their ports, the resources ``portId`` refers to."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from evreserve.models import INT32_MAX
from evreserve_lambda.app import caller, create_app, lambda_handler, no_content, services, tracer
from evreserve_lambda.openapi import errors
from evreserve_lambda.params import Cursor, Limit
from evreserve_lambda.responses import (
    ChargerCreated,
    ChargerCreatedResponse,
    ChargerList,
    ChargerResponse,
    ChargerView,
    Pagination,
    PortListResponse,
    PortResponse,
    PortView,
)
from evreserve_lambda.schemas import ChargerCreate, ChargerUpdate, PortInput, PortUpdate

app = create_app()

ChargerId = Annotated[int, Path(alias="chargerId", ge=1, le=INT32_MAX)]
PortId = Annotated[int, Path(alias="portId", ge=1, le=INT32_MAX)]
_CONFLICT = {409: "ALREADY_EXISTS (ocppId, externalId taken) or STALE_WRITE (changed meanwhile; retry)"}


@app.post(
    "/api/chargers",
    summary="Register a charger",
    description="Without `password`, one is generated and returned in this response only.",
    tags=["Chargers"],
    status_code=201,
    responses=errors(409, ok=201, descriptions=_CONFLICT),
)
# Not capture_response: the answer carries a secret shown once, and the tracer would
# copy it into the trace's metadata.
@tracer.capture_method(capture_response=False)
def register_charger(request: ChargerCreate) -> ChargerCreatedResponse:
    registered = services().chargers.register(caller(app), request.to_domain())
    view = ChargerView.of(registered.charger).model_dump()
    return ChargerCreatedResponse(data=ChargerCreated(**view, password=registered.generated_password))


@app.get(
    "/api/chargers",
    summary="List chargers, or look one up by ocppId / externalId",
    tags=["Chargers"],
    responses=errors(),
)
@tracer.capture_method
def list_chargers(
    ocpp_id: Annotated[str | None, Query(alias="ocppId", min_length=1, max_length=48)] = None,
    external_id: Annotated[str | None, Query(alias="externalId", min_length=1, max_length=100)] = None,
    limit: Limit = 50,
    next_page_cursor: Cursor = None,
) -> ChargerList:
    page = services().chargers.list_chargers(
        caller(app), limit=limit, cursor=next_page_cursor, ocpp_id=ocpp_id, external_id=external_id
    )
    return ChargerList(
        data=[ChargerView.of(c) for c in page.items],
        pagination=Pagination(has_next_page=page.next_cursor is not None, next_page_cursor=page.next_cursor),
    )


@app.get("/api/chargers/<chargerId>", summary="Read a charger", tags=["Chargers"], responses=errors())
@tracer.capture_method
def get_charger(charger_id: ChargerId) -> ChargerResponse:
    return ChargerResponse(data=ChargerView.of(services().chargers.get(caller(app), charger_id)))


@app.patch(
    "/api/chargers/<chargerId>",
    summary="Update a charger",
    description="Absent fields stay, `null` clears. Safe while the charger is connected.",
    tags=["Chargers"],
    responses=errors(409, descriptions=_CONFLICT),
)
@tracer.capture_method
def update_charger(charger_id: ChargerId, request: ChargerUpdate) -> ChargerResponse:
    return ChargerResponse(
        data=ChargerView.of(services().chargers.update(caller(app), charger_id, request.to_domain()))
    )


@app.delete(
    "/api/chargers/<chargerId>",
    summary="Delete a charger",
    tags=["Chargers"],
    status_code=204,
    responses=errors(409, ok=204, descriptions=_CONFLICT),
)
@tracer.capture_method
def delete_charger(charger_id: ChargerId) -> Response[str]:
    services().chargers.delete(caller(app), charger_id)
    return no_content()


@app.get("/api/chargers/<chargerId>/ports", summary="List a charger's ports", tags=["Ports"], responses=errors())
@tracer.capture_method
def list_ports(charger_id: ChargerId) -> PortListResponse:
    charger = services().chargers.get(caller(app), charger_id)
    ports = sorted(charger.ports, key=lambda p: p.port_number)
    return PortListResponse(data=[PortView.of(charger, p) for p in ports])


@app.post(
    "/api/chargers/<chargerId>/ports",
    summary="Add a port",
    tags=["Ports"],
    status_code=201,
    responses=errors(409, ok=201, descriptions=_CONFLICT),
)
@tracer.capture_method
def add_port(charger_id: ChargerId, request: PortInput) -> PortResponse:
    charger, port = services().chargers.add_port(caller(app), charger_id, request.to_domain())
    return PortResponse(data=PortView.of(charger, port))


@app.patch(
    "/api/chargers/<chargerId>/ports/<portId>",
    summary="Update a port",
    tags=["Ports"],
    responses=errors(409, descriptions=_CONFLICT),
)
@tracer.capture_method
def update_port(charger_id: ChargerId, port_id: PortId, request: PortUpdate) -> PortResponse:
    charger, port = services().chargers.update_port(caller(app), charger_id, port_id, request.to_domain())
    return PortResponse(data=PortView.of(charger, port))


@app.delete(
    "/api/chargers/<chargerId>/ports/<portId>",
    summary="Delete a port",
    tags=["Ports"],
    status_code=204,
    responses=errors(409, ok=204, descriptions=_CONFLICT),
)
@tracer.capture_method
def delete_port(charger_id: ChargerId, port_id: PortId) -> Response[str]:
    services().chargers.delete_port(caller(app), charger_id, port_id)
    return no_content()


handler: Any = lambda_handler(app)
