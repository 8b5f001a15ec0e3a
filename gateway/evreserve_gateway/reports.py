"""What a connected charger reports, written to the shared tables (the ``ChargerEvents`` of a session)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

from evreserve.errors import StaleWrite
from evreserve.models import FINAL_STATES, INT32_MAX, BootInfo, OcppStatus, ReservationState, utcnow
from evreserve.storage.registry import RegistryStore
from evreserve.storage.reservations import ReservationStore

from . import charger_messages as msgs
from .background import Background
from .charger_messages import GroupToken
from .offload import Offload

#: The Authorize answer may wait this long for the reservations; after that the charger
#: gets a plain Accepted rather than being left waiting.
AUTHORIZE_LOOKUP_TIMEOUT_S = 3.0

_ACTIVE = frozenset({ReservationState.PENDING, ReservationState.ACCEPTED})
_ACCEPTED = frozenset({ReservationState.ACCEPTED})


class ChargerReports:
    """Storage side of one charger's session; writes run in the background, failures are logged."""

    __slots__ = ("_account_id", "_background", "_charger_id", "_io", "_logger", "_registry", "_reservations")

    def __init__(
        self,
        charger_id: int,
        account_id: int,
        registry: RegistryStore,
        reservations: ReservationStore,
        io: Offload,
        background: Background,
        logger: logging.LoggerAdapter[Any],
    ) -> None:
        self._charger_id = charger_id
        self._account_id = account_id
        self._registry = registry
        self._reservations = reservations
        self._io = io
        self._background = background
        self._logger = logger

    def record_boot(self, boot: BootInfo) -> None:
        write = self._io(self._registry.record_boot, self._charger_id, boot)
        self._background.spawn(write, "record boot", self._logger)

    def record_port_status(self, port_number: int, status: OcppStatus) -> None:
        self._background.spawn(self._port_status(port_number, status), "record port status", self._logger)

    async def _port_status(self, port_number: int, status: OcppStatus) -> None:
        with contextlib.suppress(StaleWrite):  # a newer report is stored already
            await self._io(self._registry.record_port_status, self._charger_id, port_number, status)
        if status.status in msgs.ENDS_RESERVATION:
            reservations = await self._io(self._reservations.for_charger, self._charger_id)
            for reservation in msgs.reservations_ended_by_status(reservations, port_number, status.status, utcnow()):
                await self._end(reservation.reservation_id, ReservationState.REMOVED, _ACCEPTED)

    def record_reservation_end(self, reservation_id: int, state: ReservationState) -> None:
        if not 0 <= reservation_id <= INT32_MAX:
            self._logger.warning("ignored an out-of-range reservationId", extra={"reservationId": reservation_id})
            return
        self._background.spawn(self._end(reservation_id, state, _ACTIVE), "end reservation", self._logger)

    async def _end(self, reservation_id: int, state: ReservationState, allowed: frozenset[ReservationState]) -> None:
        changed = await self._io(
            self._reservations.transition,
            self._account_id,
            reservation_id,
            state,
            allowed_from=allowed,
            at=utcnow(),
            ended=state in FINAL_STATES,
            charger_id=self._charger_id,
        )
        self._logger.info(
            "reservation ended" if changed else "reservation end ignored (unknown, ended, or another charger's)",
            extra={"reservationId": reservation_id, "state": state.value},
        )

    async def group_token_for(self, id_tag: str) -> GroupToken | None:
        try:
            async with asyncio.timeout(AUTHORIZE_LOOKUP_TIMEOUT_S):
                reservations = await self._io(self._reservations.for_charger, self._charger_id)
        except Exception:
            self._logger.exception("could not read reservations for Authorize; answering without a group")
            return None
        return msgs.group_token(reservations, id_tag, utcnow())

    def new_transaction_id(self) -> int:
        # The service keeps no transactions; the id only has to be a positive int32.
        return 1 + secrets.randbelow(INT32_MAX)
