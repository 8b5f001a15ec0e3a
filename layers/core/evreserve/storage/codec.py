"""Plain Python values <-> DynamoDB attribute values (the low-level client's wire shape).

The rules are boto3's ``TypeSerializer`` / ``TypeDeserializer`` (numbers checked against
DynamoDB's 38 digits and exponent range), written here so that a function's import does
not pull in boto3, and with the values the stores want back: numbers as ``int`` when
integral else ``float``, blobs as ``bytes``.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from decimal import Clamped, Context, Decimal, Inexact, Overflow, Rounded, Underflow
from typing import Any

#: DynamoDB's number limits (boto3's DYNAMODB_CONTEXT): a value it would round is refused here.
_NUMBERS = Context(Emin=-128, Emax=126, prec=38, traps=[Clamped, Overflow, Inexact, Rounded, Underflow])


def _number(value: int | float | Decimal) -> str:
    # Floats go through str so that 22.5 stays 22.5 instead of its binary expansion.
    number = _NUMBERS.create_decimal(str(value) if isinstance(value, float) else value)
    if not number.is_finite():
        raise TypeError("DynamoDB holds no Infinity or NaN")
    return str(number)


def _to_number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        number = _NUMBERS.create_decimal(text)
        return int(number) if number == number.to_integral_value() else float(number)


def serialize(value: Any) -> dict[str, Any]:
    """One attribute value (``{"S": ...}``, ``{"M": ...}``, ...). ``None`` inside maps is dropped."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, int | float | Decimal):
        return {"N": _number(value)}
    if isinstance(value, bytes | bytearray):
        return {"B": bytes(value)}
    if isinstance(value, Mapping):
        return {"M": {str(k): serialize(v) for k, v in value.items() if v is not None}}
    if isinstance(value, list | tuple):
        return {"L": [serialize(v) for v in value]}
    if isinstance(value, Set):
        return _serialize_set(value)
    raise TypeError(f"{type(value).__name__} is not a DynamoDB value")


def _serialize_set(values: Set[Any]) -> dict[str, Any]:
    if values and all(isinstance(v, str) for v in values):
        return {"SS": list(values)}
    if values and all(isinstance(v, int | float | Decimal) and not isinstance(v, bool) for v in values):
        return {"NS": [_number(v) for v in values]}
    if values and all(isinstance(v, bytes | bytearray) for v in values):
        return {"BS": [bytes(v) for v in values]}
    raise TypeError("a DynamoDB set holds strings, numbers or bytes only, and at least one")


def deserialize(value: dict[str, Any]) -> Any:
    ((kind, data),) = value.items()
    if kind == "S":
        return data
    if kind == "N":
        return _to_number(data)
    if kind == "BOOL":
        return bool(data)
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: deserialize(v) for k, v in data.items()}
    if kind == "L":
        return [deserialize(v) for v in data]
    if kind == "B":
        return bytes(data)
    if kind == "SS":
        return set(data)
    if kind == "NS":
        return {_to_number(v) for v in data}
    if kind == "BS":
        return {bytes(v) for v in data}
    raise TypeError(f"{kind} is not a DynamoDB type")


def to_item(data: dict[str, Any]) -> dict[str, Any]:
    """A whole item; top-level ``None`` attributes are left out rather than stored as NULL."""
    return {k: serialize(v) for k, v in data.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: deserialize(v) for k, v in item.items()}
