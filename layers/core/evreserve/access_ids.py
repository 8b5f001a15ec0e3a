"""Access IDs: the home of drivers' tokens, their groups, and what a charger is told about a token.

An access ID is a token an account registers (an RFID card, a vehicle, a key code) with
its status and, optionally, its group: the ``parentIdTag`` shared by the tokens of one
fleet or household. A charger decides who may start on a reserved connector from the
CSMS's answer to ``Authorize``: the presented token's status and group. So the group
of every token must be known, not only the reserved one's (docs/api.md, "Access IDs").

:func:`verdict` is that decision, for both OCPP versions; the gateway maps it to 1.6
``idTagInfo`` or 2.0.1 ``idTokenInfo``. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from .models import Model, UnknownTokenPolicy

__all__ = ["UnknownTokenPolicy"]  # the account's setting, judged here

MAX_NAME_LENGTH: Final = 100


class TokenType(StrEnum):
    RFID = "RFID"
    VEHICLE = "Vehicle"
    CENTRAL = "Central"
    EMAID = "eMAID"
    KEY_CODE = "KeyCode"
    LOCAL = "Local"
    MAC_ADDRESS = "MacAddress"


class AuthorizationStatus(StrEnum):
    AUTHORIZED = "Authorized"
    REVOKED = "Revoked"


class AccessId(Model):
    access_id: int
    account_id: int
    ocpp_id_tag: str
    type: TokenType
    authorization_status: AuthorizationStatus = AuthorizationStatus.AUTHORIZED
    parent_id_tag: str | None = None
    name: str | None = None
    created_at: datetime
    updated_at: datetime


def tag_key(id_tag: str) -> str:
    """The form an idTag is stored and looked up under: OCPP compares idTags case-insensitively."""
    return id_tag.casefold()


# -- what a charger is told ----------------------------------------------------------


class TokenStatus(StrEnum):
    """The status of an Authorize answer (the same words in 1.6 and 2.0.1)."""

    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    INVALID = "Invalid"


@dataclass(frozen=True, slots=True)
class Group:
    """The group token an answer carries: 1.6 ``parentIdTag``, 2.0.1 ``groupIdToken``."""

    id_token: str
    #: 2.0.1's ``groupIdToken.type``.
    type: str = TokenType.CENTRAL.value


@dataclass(frozen=True, slots=True)
class Verdict:
    status: TokenStatus
    group: Group | None = None


def verdict(
    registered: AccessId | None,
    reserved_group: Group | None,
    *,
    reserved: bool = False,
    policy: UnknownTokenPolicy = UnknownTokenPolicy.ACCEPT,
) -> Verdict:
    """What the charger is told about a presented token.

    ``registered`` is the account's access ID for the token, if any; ``reserved`` says
    whether the token holds an active reservation of this charger, and ``reserved_group``
    that reservation's group. A registered token's own group wins over the reservation's;
    a revoked one is Blocked even if it holds a reservation (the operator's last word). An
    unregistered token that holds a reservation is always accepted with its group: the
    reservation named it.
    """
    if registered is not None:
        if registered.authorization_status is AuthorizationStatus.REVOKED:
            return Verdict(TokenStatus.BLOCKED)
        group = Group(registered.parent_id_tag) if registered.parent_id_tag is not None else reserved_group
        return Verdict(TokenStatus.ACCEPTED, group)
    if reserved or policy is UnknownTokenPolicy.ACCEPT:
        return Verdict(TokenStatus.ACCEPTED, reserved_group)
    return Verdict(TokenStatus.INVALID)
