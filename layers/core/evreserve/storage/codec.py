"""Plain Python values <-> DynamoDB attribute values (the low-level client's wire shape)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _prepare(value: Any) -> Any:
    # DynamoDB numbers must be Decimal; floats are converted through str so that
    # 22.5 stays 22.5 instead of its binary expansion.
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _prepare(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_prepare(v) for v in value]
    return value


def _restore(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v) for v in value]
    return value


def serialize(value: Any) -> dict[str, Any]:
    """One attribute value (``{"S": ...}``, ``{"M": ...}``, ...). ``None`` inside maps is dropped."""
    return dict(_serializer.serialize(_prepare(value)))


def to_item(data: dict[str, Any]) -> dict[str, Any]:
    """A whole item; top-level ``None`` attributes are left out rather than stored as NULL."""
    return {k: serialize(v) for k, v in data.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _restore(_deserializer.deserialize(v)) for k, v in item.items()}
