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


def _same_report(a: OcppStatus, b: OcppStatus) -> bool:
    """The same status, error and info: a repeat, whatever its timestamp."""
    return a.model_dump(exclude={"timestamp"}) == b.model_dump(exclude={"timestamp"})


def _ends(status: OcppStatus) -> bool:
    return status.status in msgs.ENDS_RESERVATION


class _PortReports:
    """One port's StatusNotifications on their way to the registry.

    One write at a time per port, and what arrives meanwhile waits in ``queue``, where
    the latest report replaces a waiting one: a burst of reports costs two writes, not
    one per report, and no boto3 work piles up behind a slow table. A report that ends
    reservations (Faulted, Unavailable) is never replaced by a later one, so its end
    still happens; two of those in a row end the same reservations, so they collapse.
    The queue is therefore at most [ending, other].
    """

    __slots__ = ("queue", "stored", "writing")

    def __init__(self) -> None:
        self.queue: list[OcppStatus] = []
        #: The last report this session stored; a repeat of it is not written again.
        self.stored: OcppStatus | None = None
        self.writing = False

    def offer(self, status: OcppStatus) -> bool:
        """Queue a report; False if there is nothing to write (a repeat of the stored one)."""
        queue = self.queue
        idle = not self.writing and not queue
        if idle and self.stored is not None and not _ends(status) and _same_report(self.stored, status):
            # The stored report stands, with the timestamp of when this status began.
            return False
        if queue and (not _ends(queue[-1]) or _ends(status)):
            queue.pop()
        queue.append(status)
        return True


class ChargerReports:
    """Storage side of one charger's session; writes run in the background, failures are logged."""

    __slots__ = (
        "_account_id",
        "_background",
        "_charger_id",
        "_io",
        "_logger",
        "_ports",
        "_registry",
        "_reservations",
    )

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
        self._ports: dict[int, _PortReports] = {}

    def record_boot(self, boot: BootInfo) -> None:
        write = self._io(self._registry.record_boot, self._charger_id, boot)
        self._background.spawn(write, "record boot", self._logger)

    def record_port_status(self, port_number: int, status: OcppStatus) -> None:
        port = self._ports.get(port_number)
        if port is None:
            port = self._ports[port_number] = _PortReports()
        if not port.offer(status) or port.writing:
            return
        port.writing = True
        self._background.spawn(self._write_port(port_number, port), "record port status", self._logger)

    async def _write_port(self, port_number: int, port: _PortReports) -> None:
        try:
            while port.queue:
                status = port.queue.pop(0)
                try:
                    await self._port_status(port_number, status)
                except Exception:
                    # Logged and dropped, as a lone write would be; the next report is still written.
                    self._logger.exception("could not store a port status", extra={"port": port_number})
                    continue
                port.stored = status
        finally:
            port.writing = False

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
