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
from dataclasses import dataclass
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


#: How long a finished command's answer is replayed to an identical request without asking the
#: charger again: long enough for a client's retry of a request whose answer it lost, short
#: enough that an Occupied or Faulted port is asked again once it may have changed.
REPLAY_WINDOW_S = 30
#: How long an answer is replayed to a request carrying the same ``Idempotency-Key``.
KEYED_REPLAY_S = 24 * 3600


@dataclass(frozen=True, slots=True)
class RequestIdentity:
    """How a request's commands are named and how long their answers are replayed.

    Without a key, by the request itself (account, operation, canonical body): a plain
    retry finds the first command for ``REPLAY_WINDOW_S``. With the caller's
    ``Idempotency-Key``, by the key: the same key finds the same command for 24 h, and
    the same key with another body is a conflict (the body's hash is kept with it).
    """

    account_id: int
    operation: str
    body: dict[str, Any]
    key: str | None = None

    def command_id(self, after: str) -> str:
        if self.key is None:
            return command_id_for(self.account_id, self.operation, self.body, after)
        return command_id_for(self.account_id, f"{self.operation}/key", {"idempotencyKey": self.key}, after)

    @property
    def request_hash(self) -> str:
        return command_id_for(self.account_id, self.operation, self.body)

    @property
    def replay_s(self) -> int:
        return REPLAY_WINDOW_S if self.key is None else KEYED_REPLAY_S
