"""Validation of the public request bodies (evreserve_lambda.schemas), at the edge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from evreserve.models import Port
from evreserve.storage.codec import serialize
from evreserve.storage.items import port_data
from evreserve_lambda.schemas import CancelRequest, ChargerCreate, PortInput, PortUpdate, ReserveRequest

FUTURE = (datetime.now(UTC) + timedelta(days=1)).isoformat().replace("+00:00", "Z")


def reserve(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"portId": 34, "expiryDate": FUTURE, "idTag": "RFID001", "reservationId": 1001}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def fields_in_error(body: dict[str, Any]) -> set[str]:
    with pytest.raises(ValidationError) as caught:
        ReserveRequest.model_validate(body)
    return {".".join(str(p) for p in e["loc"]) for e in caught.value.errors()}


def test_spec_example_shape_is_accepted():
    """The spec's example body (with a future expiry) validates, camelCase in and out."""
    request = ReserveRequest.model_validate(reserve(parentIdTag="GROUP", idTokenType="eMAID"))
    assert request.model_dump(by_alias=True, exclude_none=True, mode="json")["idTokenType"] == "eMAID"


@pytest.mark.parametrize("id_tag", ["", "x" * 21, "tab\there", "naïve"])
def test_id_tag_must_be_1_to_20_printable_characters(id_tag: str):
    """idTag: 1..20 printable ASCII characters (OCPP CiString20)."""
    assert fields_in_error(reserve(idTag=id_tag)) == {"idTag"}


def test_id_tag_of_20_characters_is_fine():
    """The upper bound itself is accepted."""
    assert ReserveRequest.model_validate(reserve(idTag="x" * 20)).id_tag == "x" * 20


@pytest.mark.parametrize(
    "expiry",
    ["2020-01-01T00:00:00Z", "2030-01-01T00:00:00", "tomorrow", 1893456000, "2030-13-01T00:00:00Z"],
)
def test_expiry_must_be_a_future_iso_instant_with_offset(expiry: object):
    """expiryDate: an ISO 8601 string with an offset, in the future (no epoch numbers, no naive times)."""
    assert fields_in_error(reserve(expiryDate=expiry)) == {"expiryDate"}


@pytest.mark.parametrize("field", ["portId", "reservationId"])
@pytest.mark.parametrize("value", [2**31, -1, "34", 34.5, True])
def test_integers_are_strict_int32(field: str, value: object):
    """portId / reservationId: real integers within OCPP's int32."""
    assert fields_in_error(reserve(**{field: value})) == {field}


def test_reservation_id_zero_and_int32_max_are_valid():
    """The int32 bounds themselves are accepted."""
    assert ReserveRequest.model_validate(reserve(reservationId=0)).reservation_id == 0
    assert ReserveRequest.model_validate(reserve(reservationId=2**31 - 1)).reservation_id == 2**31 - 1


def test_id_token_type_must_be_a_listed_value():
    """idTokenType: one of the spec's table (NoAuthorization is not offered)."""
    assert fields_in_error(reserve(idTokenType="NoAuthorization")) == {"idTokenType"}


def test_unknown_fields_are_rejected():
    """An unknown field (e.g. a typo) is a 400, not silently dropped."""
    assert fields_in_error(reserve(expiryDat=FUTURE)) == {"expiryDat"}


def test_missing_fields_are_reported_each():
    """Every missing required field is named."""
    assert fields_in_error({}) == {"portId", "expiryDate", "idTag", "reservationId"}


def test_cancel_request_is_strict_too():
    """Cancel: chargerId >= 1 and reservationId int32, nothing else."""
    with pytest.raises(ValidationError):
        CancelRequest.model_validate({"chargerId": 0, "reservationId": 1})
    with pytest.raises(ValidationError):
        CancelRequest.model_validate({"chargerId": 1, "reservationId": 1, "portId": 3})
    assert CancelRequest.model_validate({"chargerId": 12, "reservationId": 1001}).charger_id == 12


@pytest.mark.parametrize("ocpp_id", ["has:colon", "has space", "x" * 49, ""])
def test_charger_ocpp_id_rules(ocpp_id: str):
    """ocppId: OCPP identifierString, at most 48 characters, no colon (it is the Basic-auth user)."""
    with pytest.raises(ValidationError):
        ChargerCreate.model_validate({"ocppId": ocpp_id, "ports": [{"portNumber": 1}]})


def test_charger_ports_unique_and_password_length():
    """Port numbers are unique per charger; a chosen password has 16-40 characters."""
    with pytest.raises(ValidationError):
        ChargerCreate.model_validate({"ocppId": "CP1", "ports": [{"portNumber": 1}, {"portNumber": 1}]})
    with pytest.raises(ValidationError):
        ChargerCreate.model_validate({"ocppId": "CP1", "password": "short", "ports": [{"portNumber": 1}]})


@pytest.mark.parametrize("power", [5e-324, 1e-200, 0.0009, 0, -1, 10_000.5])
def test_port_power_outside_one_watt_to_10_mw_is_refused(power: float):
    """maximumPowerKw: 0.001..10000; a subnormal float once reached DynamoDB and failed the write (500)."""
    with pytest.raises(ValidationError):
        PortInput.model_validate({"portNumber": 1, "maximumPowerKw": power})
    with pytest.raises(ValidationError):
        PortUpdate.model_validate({"maximumPowerKw": power})


def test_port_power_that_validates_serializes_for_dynamodb():
    """The extremes that pass validation are numbers DynamoDB stores."""
    for power in (0.001, 0.1 + 0.2, 10_000):
        valid = PortInput.model_validate({"portNumber": 1, "maximumPowerKw": power})
        serialize(port_data(Port(id=1, port_number=1, maximum_power_kw=valid.maximum_power_kw)))
