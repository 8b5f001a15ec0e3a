"""Webhook signatures: the home of ``Evreserve-Signature`` (docs/api.md, "Reservation events").

``t=<unix seconds>,v1=<lowercase hex HMAC-SHA256(secret, "<t>.<raw body>")>``, Stripe's
scheme: the timestamp is signed with the body, so a captured delivery cannot be replayed
later than the receiver's tolerance. Pure: the deliverer signs, a receiver verifies
(``devstack.webhook_echo`` and the snippet in docs/api.md use this same function).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

HEADER: Final = "Evreserve-Signature"
#: A receiver's default tolerance for the signed timestamp.
TOLERANCE_S: Final = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, now: int, tolerance_s: int = TOLERANCE_S) -> bool:
    """Whether ``header`` signs ``body`` with ``secret``, within ``tolerance_s`` of ``now``."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        parts.setdefault(name, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    # Several v1 values are allowed (a secret being rotated); any one may match.
    return any(hmac.compare_digest(expected, candidate) for candidate in parts.get("v1", []))
