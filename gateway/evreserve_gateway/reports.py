"""What a connected charger reports, written to the shared tables (the ``ChargerEvents`` of a session)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
from dataclasses import replace
from typing import Any

from evreserve import lifecycle
from evreserve.access_ids import UnknownTokenPolicy, Verdict, verdict
from evreserve.errors import StaleWrite
from evreserve.models import INT32_MAX, BootInfo, OcppStatus, utcnow
from evreserve.storage.registry import RegistryStore
from evreserve.storage.reservations import ReservationStore

from . import charger_messages as msgs
from .background import Background
from .offload import Offload
from .tokens import TokenCache

#: The Authorize answer may wait this long for the reservations; after that the charger
#: is answered without them rather than being left waiting.
AUTHORIZE_LOOKUP_TIMEOUT_S = 3.0

#: What makes a report a repeat: everything but its timestamp.
Signature = tuple[str, str | None, str | None, str | None]
#: Where a report is stored: the port, and on 2.0.1 the connector of the EVSE.
Slot = tuple[int, int | None]


def _signature(status: OcppStatus) -> Signature:
    # status and errorCode come from the schemas' enums: interned, every charger's
    # signature shares the same few strings instead of holding its own copies.
    error_code = sys.intern(status.error_code) if status.error_code is not None else None
    return (sys.intern(status.status), error_code, status.vendor_error_code, status.info)


def _ends(status: OcppStatus) -> bool:
    return status.status in lifecycle.PORT_STATUSES_ENDING


def _enqueue(queue: list[OcppStatus], status: OcppStatus) -> None:
    """Queue a report behind a port's write in flight; the latest replaces a waiting one.

    A report that ends reservations (Faulted, Unavailable) is never replaced by a later
    one, so its end still happens; two of those in a row end the same reservations, so
    they collapse. The queue is therefore at most [ending, other].
    """
    if queue and (not _ends(queue[-1]) or _ends(status)):
        queue.pop()
    queue.append(status)


class ChargerReports:
    """Storage side of one charger's session; writes run in the background, failures are logged."""

    __slots__ = (
        "_account_id",
        "_background",
        "_charger_id",
        "_io",
        "_logger",
        "_placing",
        "_registry",
        "_reservations",
        "_stored",
        "_tokens",
        "_writing",
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
        tokens: TokenCache,
    ) -> None:
        self._charger_id = charger_id
        self._tokens = tokens
        self._account_id = account_id
        self._registry = registry
        self._reservations = reservations
        self._io = io
        self._background = background
        self._logger = logger
        #: Per slot, the last report this session stored (its signature): a repeat of it
        #: is not written again. A tuple, not the model: this lives as long as the socket.
        self._stored: dict[Slot, Signature] = {}
        #: Slots with a write in flight, and the reports waiting behind it (see _enqueue):
        #: one write at a time per slot, so a burst costs two writes and no AWS work
        #: piles up behind a slow table. Per slot, not per port: one connector's report
        #: must not replace another's waiting one.
        self._writing: dict[Slot, list[OcppStatus]] | None = None
        #: A whole-charger reservation was sent on this session and may still be unplaced:
        #: only then does a Reserved report cost a read of the charger's reservations.
        self._placing = False

    def record_boot(self, boot: BootInfo) -> None:
        write = self._io(self._registry.record_boot, self._charger_id, boot)
        self._background.spawn(write, "record boot", self._logger)

    def record_port_status(self, port_number: int, status: OcppStatus) -> None:
        slot = (port_number, status.connector_id)
        queue = self._writing.get(slot) if self._writing is not None else None
        if queue is not None:
            _enqueue(queue, status)
            return
        if not _ends(status) and self._stored.get(slot) == _signature(status):
            return  # the stored report stands, with the timestamp of when this status began
        if self._writing is None:
            # Only while a write is in flight: a connection's ports are idle nearly always.
            self._writing = {}
        self._writing[slot] = [status]
        self._background.spawn(self._write_port(slot), "record port status", self._logger)

    async def _write_port(self, slot: Slot) -> None:
        assert self._writing is not None  # set by record_port_status
        writing = self._writing
        queue = writing[slot]
        port_number = slot[0]
        try:
            while queue:
                status = queue.pop(0)
                try:
                    await self._port_status(port_number, status)
                except Exception:
                    # Logged and dropped, as a lone write would be; the next report is still written.
                    self._stored.pop(slot, None)
                    self._logger.exception("could not store a port status", extra={"port": port_number})
                    continue
                self._stored[slot] = _signature(status)
        finally:
            del writing[slot]
            if not writing and self._writing is writing:
                self._writing = None

    async def _port_status(self, port_number: int, status: OcppStatus) -> None:
        with contextlib.suppress(StaleWrite):  # a newer report is stored already
            await self._io(self._registry.record_port_status, self._charger_id, port_number, status)
        if status.status == "Reserved" and self._placing:
            await self._place(port_number)
        transition = lifecycle.port_status_reported(status.status, self._charger_id)
        if transition is None:
            return
        reservations = await self._io(self._reservations.active_for_charger, self._charger_id)
        for reservation in lifecycle.ended_by_port_status(reservations, port_number, status.status, utcnow()):
            await self._apply(reservation.reservation_id, transition)

    def expect_placement(self) -> None:
        self._placing = True

    async def _place(self, port_number: int) -> None:
        """A port reported Reserved: the whole-charger reservation it now holds, if certain, records it."""
        reservations = await self._io(self._reservations.active_for_charger, self._charger_id)
        if not any(r.port_number is None for r in reservations):
            self._placing = False  # none left to place
        placed = lifecycle.placed_by_port_status(reservations, port_number, "Reserved", utcnow())
        port = await self._port(port_number) if placed is not None else None
        if placed is None or port is None:
            return
        recorded = await self._io(
            self._reservations.place, self._account_id, placed.reservation_id, self._charger_id, port, utcnow()
        )
        if recorded:
            self._logger.info(
                "whole-charger reservation placed", extra={"reservationId": placed.reservation_id, "port": port_number}
            )

    async def _port(self, port_number: int) -> tuple[int, int] | None:
        """(port id, number) of the charger's port with this number, as registered now."""
        charger = await self._io(self._registry.get_charger, self._charger_id)
        port = charger.port_by_number(port_number) if charger is not None else None
        return (port.id, port.port_number) if port is not None else None

    def record_reservation_used(self, reservation_id: int, port_number: int | None = None) -> None:
        self._record(reservation_id, lifecycle.transaction_started(self._charger_id), port_number)

    def record_reservation_status_update(self, reservation_id: int, update_status: str) -> None:
        transition = lifecycle.status_updated(update_status, self._charger_id)
        if transition is not None:
            self._record(reservation_id, transition)

    def _record(self, reservation_id: int, transition: lifecycle.Transition, port_number: int | None = None) -> None:
        if not 0 <= reservation_id <= INT32_MAX:
            self._logger.warning("ignored an out-of-range reservationId", extra={"reservationId": reservation_id})
            return
        self._background.spawn(self._apply_on(reservation_id, transition, port_number), "end reservation", self._logger)

    async def _apply_on(self, reservation_id: int, transition: lifecycle.Transition, port_number: int | None) -> None:
        if port_number is not None:
            # The port is recorded only where the reservation had none (a whole-charger one).
            transition = replace(transition, port=await self._port(port_number))
        await self._apply(reservation_id, transition)

    async def _apply(self, reservation_id: int, transition: lifecycle.Transition) -> None:
        changed = await self._io(self._reservations.transition, self._account_id, reservation_id, transition, utcnow())
        self._logger.info(
            "reservation ended" if changed else "reservation end ignored (unknown, ended, or another charger's)",
            extra={"reservationId": reservation_id, "state": transition.to.value},
        )

    async def authorize(self, id_tag: str) -> Verdict:
        registered, held = await asyncio.gather(self._tokens.lookup(self._account_id, id_tag), self._held_by(id_tag))
        # The policy only decides for a token nobody registered or reserved: read only then.
        policy = (
            await self._tokens.policy(self._account_id)
            if registered is None and not held.reserved
            else UnknownTokenPolicy.ACCEPT
        )
        return verdict(registered, held.group, reserved=held.reserved, policy=policy)

    async def _held_by(self, id_tag: str) -> msgs.Held:
        try:
            async with asyncio.timeout(AUTHORIZE_LOOKUP_TIMEOUT_S):
                reservations = await self._io(self._reservations.active_for_charger, self._charger_id)
        except Exception:
            self._logger.exception("could not read reservations for Authorize; answering without them")
            return msgs.Held(reserved=False)
        return msgs.held_by(reservations, id_tag, utcnow())

    def new_transaction_id(self) -> int:
        # The service keeps no transactions; the id only has to be a positive int32.
        return 1 + secrets.randbelow(INT32_MAX)
