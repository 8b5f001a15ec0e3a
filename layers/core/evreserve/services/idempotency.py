"""Deterministic command ids: an identical request finds the command of the first one.

The id hashes the account, the operation, the canonical body and a *generation*: the
id of the command this request follows on (empty for the first). A plain retry has
the same generation, so it finds the first command and waits for (or returns) its
outcome instead of sending a second one; a request that must be sent again (the
reservation it made was cancelled since, or the charger never answered) chains to a
new generation, which its own retries find in turn.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime
from enum import Enum
from typing import Any


def canonical(body: dict[str, Any]) -> str:
    """The body as compact JSON with sorted keys: equal requests give equal strings."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def command_id_for(account_id: int, operation: str, body: dict[str, Any], after: str = "") -> str:
    material = canonical({"account": account_id, "operation": operation, "body": body, "after": after})
    return hashlib.sha256(material.encode()).hexdigest()


def body_of(request: Any) -> dict[str, Any]:
    """A domain request (a dataclass) as the plain values its command id hashes; ``None`` fields left out.

    Times are UTC, so the same instant written with another offset is the same request.
    """
    body: dict[str, Any] = {}
    for name, value in dataclasses.asdict(request).items():
        if value is None:
            continue
        if isinstance(value, datetime):
            value = value.astimezone(UTC).isoformat()
        elif isinstance(value, Enum):
            value = value.value
        body[name] = value
    return body
