"""Reserving and cancelling ports, and reading the reservations recorded.

The happy path of a reservation costs one transaction (command + pending reservation,
with a check that the charger remembered by this instance still stands), one SQS
message and the polls for the outcome. The charger is read on the first request for it
in this instance, and again whenever the check fails (``ChargerCache``); its port's
pointer on the first request for the port (``PortCache``). The reservation record is
read only on a retry, to tell a plain retry from a request that must be sent again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from .. import correlation, lifecycle, ocpp_mapping
from ..channel import CommandChannel
from ..errors import (
    ChargerOffline,
    DependencyUnavailable,
    DomainError,
    InvalidRequest,
    NotFound,
    ReservationIdConflict,
)
from ..models import (
    CancelStatus,
    Charger,
    Command,
    CommandAction,
    CommandOutcome,
    OcppVersion,
    OutcomeKind,
    Port,
    Reservation,
    ReservationRef,
    ReservationState,
    ReserveStatus,
    utcnow,
)
from ..requests import CancelRequest, ReserveRequest
from ..settings import ChannelSettings, ReservationSettings
from ..storage.commands import Submitted
from ..storage.paging import Page
from ..storage.registry import RegistryStore
from ..storage.reservations import ReservationStore
from .idempotency import RequestIdentity, body_of
from .memory import ChargerCache, ChargerLookup, PortCache
from .principal import Principal

#: Outcomes that mean the charger gave no answer: a retry of the request sends the
#: command again (re-sending a ReserveNow with the same id is safe: the charger
#: replaces the reservation, OCPP 1.6 / 2.0.1 H01.FR.02).
NO_ANSWER = frozenset({OutcomeKind.TIMEOUT, OutcomeKind.OFFLINE, OutcomeKind.EXPIRED})

#: How many generations a request may chain through before giving up (each costs reads).
MAX_GENERATIONS = 8


class _ChargerChanged(DependencyUnavailable):
    """A remembered charger changed before its command was recorded (nothing was written).

    Caught where the request starts (``_afresh_if_changed``), which reads the charger
    again; should it ever escape, it is the 503 a retry overcomes.
    """

    def __init__(self) -> None:
        super().__init__("the charger changed since it was read")


def _afresh_if_changed[T](run: Callable[[bool], T]) -> T:
    """``run(fresh=False)``, on remembered chargers; once more from fresh reads if one had changed."""
    try:
        return run(False)
    except _ChargerChanged:
        return run(True)


@dataclass(frozen=True, slots=True)
class ReservationFilter:
    charger_id: int | None = None
    port_id: int | None = None
    status: ReservationState | None = None
    active: bool | None = None

    def matches(self, reservation: Reservation, now: datetime) -> bool:
        if self.port_id is not None and reservation.port_id != self.port_id:
            return False
        if self.status is not None and lifecycle.effective_state(reservation, now) is not self.status:
            return False
        return self.active is None or lifecycle.is_active(reservation, now) == self.active

    @property
    def selective(self) -> bool:
        return self.port_id is not None or self.status is not None or self.active is not None


class ReservationService:
    def __init__(
        self,
        registry: RegistryStore,
        reservations: ReservationStore,
        channel: CommandChannel,
        settings: ChannelSettings,
        clock: Callable[[], datetime] = utcnow,
        ports: PortCache | None = None,
        *,
        rules: ReservationSettings | None = None,
        chargers: ChargerCache | None = None,
    ) -> None:
        self._registry = registry
        self._reservations = reservations
        self._channel = channel
        self._settings = settings
        self._rules = rules or ReservationSettings()
        self._clock = clock
        self._lookup = ChargerLookup(
            registry,
            ports if ports is not None else PortCache(),
            chargers if chargers is not None else ChargerCache(),
        )

    # -- commands ------------------------------------------------------------------------

    def _command(
        self,
        charger: Charger,
        command_id: str,
        action: CommandAction,
        payload: dict[str, object],
        now: datetime,
        reservation: ReservationRef | None,
        request_hash: str,
    ) -> Command:
        conn = charger.connection
        assert conn is not None  # checked by ChargerLookup.connected
        request = correlation.current()
        return Command(
            command_id=command_id,
            account_id=charger.account_id,
            charger_id=charger.id,
            ocpp_id=charger.ocpp_id,
            ocpp_version=self._version(charger),
            action=action,
            payload=payload,
            instance_id=conn.instance_id,
            session_id=conn.session_id,
            created_at=now,
            deadline=self._channel.deadline(now),
            request_hash=request_hash,
            reservation=reservation,
            correlation_id=request.correlation_id if request else None,
            xray_trace_id=request.xray_trace_id if request else None,
        )

    @staticmethod
    def _version(charger: Charger) -> OcppVersion:
        # The version negotiated on the live connection is what the charger speaks now.
        if charger.connection is not None and charger.connection.protocol is not None:
            return charger.connection.protocol
        return charger.ocpp_version or OcppVersion.V16

    def _run(
        self,
        queue_url: str,
        attempt: Callable[[str], Submitted],
        superseded: Callable[[Command], bool],
        replay_s: int,
    ) -> CommandOutcome:
        """Submit generation after generation until one is new or still stands; await its outcome."""
        after = ""
        for _ in range(MAX_GENERATIONS):
            submitted = attempt(after)
            command = submitted.command
            if (
                not submitted.created
                and command.outcome is not None
                and (self._replay_over(command.outcome, replay_s) or superseded(command))
            ):
                after = command.command_id
                continue
            if command.outcome is not None:
                return command.outcome
            if submitted.created:
                try:
                    self._channel.send(command, queue_url)
                except Exception:
                    # The remembered queue may be gone: the next request reads the charger again.
                    self._lookup.forget(command.charger_id)
                    raise
            outcome = self._channel.wait(command, sent_now=submitted.created)
            if outcome.kind in NO_ANSWER:
                self._lookup.forget(command.charger_id)
            return outcome
        raise DependencyUnavailable("This request was repeated too often in a short time; wait and retry")

    def _replay_over(self, outcome: CommandOutcome, replay_s: int) -> bool:
        """Whether an answer is too old to stand for the charger's state now (``RequestIdentity.replay_s``)."""
        return self._clock() - outcome.completed_at > timedelta(seconds=replay_s)

    def reserve(
        self, principal: Principal, request: ReserveRequest, idempotency_key: str | None = None
    ) -> ReserveStatus:
        return _afresh_if_changed(lambda fresh: self._reserve(principal, request, idempotency_key, fresh))

    def _reserve(
        self, principal: Principal, request: ReserveRequest, idempotency_key: str | None, fresh: bool
    ) -> ReserveStatus:
        account_id = principal.require_account()
        latest = self._clock() + timedelta(days=self._rules.reservation_max_days)
        if request.expiry_date > latest:
            raise InvalidRequest(
                f"expiryDate must be within {self._rules.reservation_max_days} days from now", field="expiryDate"
            )
        port: Port | None
        if request.port_id is not None:
            charger, port, remembered = self._lookup.with_port(principal, request.port_id, fresh)
            if not charger.is_connected:
                raise ChargerOffline("The charger is not connected")
        else:
            assert request.charger_id is not None  # exactly one of the two: the request's rule
            charger, remembered = self._lookup.connected(principal, request.charger_id, "Charger not found", fresh)
            port = None
        assert charger.connection is not None
        checks = self._lookup.unchanged(charger, remembered)
        payload = ocpp_mapping.reserve_now_payload(
            self._version(charger),
            reservation_id=request.reservation_id,
            port_number=port.port_number if port is not None else None,
            expiry_date=request.expiry_date,
            id_tag=request.id_tag,
            parent_id_tag=request.parent_id_tag,
            id_token_type=request.id_token_type,
        )
        identity = RequestIdentity(account_id, "reserve", body_of(request), idempotency_key)
        stale_after = timedelta(seconds=self._settings.command_timeout_s + self._settings.command_grace_s + 5)

        def attempt(after: str) -> Submitted:
            now = self._clock()
            command_id = identity.command_id(after)
            reservation = Reservation(
                account_id=account_id,
                reservation_id=request.reservation_id,
                charger_id=charger.id,
                port_id=port.id if port is not None else None,
                port_number=port.port_number if port is not None else None,
                id_tag=request.id_tag,
                parent_id_tag=request.parent_id_tag,
                id_token_type=request.id_token_type,
                expiry_date=request.expiry_date,
                state=ReservationState.PENDING,
                created_at=now,
                updated_at=now,
                command_id=command_id,
                answer_by=self._channel.deadline(now) + timedelta(seconds=self._settings.command_grace_s),
            )
            command = self._command(
                charger,
                command_id,
                CommandAction.RESERVE_NOW,
                payload,
                now,
                ReservationRef(account_id=account_id, reservation_id=request.reservation_id),
                identity.request_hash,
            )
            put = self._reservations.create_request(reservation, now=now, pending_stale_before=now - stale_after)
            budget, too_many = self._channel.budget(account_id)

            def conflict(index: int) -> DomainError:
                index -= len(checks)
                if index < 0:
                    return _ChargerChanged()
                if index == 1:
                    return too_many()
                # Nothing of the reservation that holds the id (its port, its charger) is
                # said: a key limited to some chargers may not learn about the others.
                return ReservationIdConflict(
                    f"reservationId {request.reservation_id} is in use by another active reservation; choose another",
                    reservationId=request.reservation_id,
                )

            return self._channel.submit(
                command,
                also=[*checks, put, budget],
                on_conflict=conflict,
                keep_s=identity.replay_s,
                checks=len(checks),
            )

        def superseded(command: Command) -> bool:
            assert command.outcome is not None
            if command.outcome.kind in NO_ANSWER:
                return True
            record = self._reservations.get(account_id, request.reservation_id)
            return lifecycle.ended_since(record, command.command_id, self._clock())

        outcome = self._run(charger.connection.queue_url, attempt, superseded, identity.replay_s)
        return ocpp_mapping.reserve_status(outcome)

    def cancel(self, principal: Principal, request: CancelRequest, idempotency_key: str | None = None) -> CancelStatus:
        return _afresh_if_changed(lambda fresh: self._cancel(principal, request, idempotency_key, fresh))

    def _cancel(
        self, principal: Principal, request: CancelRequest, idempotency_key: str | None, fresh: bool
    ) -> CancelStatus:
        account_id = principal.require_account()
        charger, remembered = self._lookup.connected(principal, request.charger_id, "Charger not found", fresh)
        assert charger.connection is not None
        checks = self._lookup.unchanged(charger, remembered)
        record = self._reservations.get(account_id, request.reservation_id)
        # The cancel command's id follows the reservation's current command: a retry is
        # deduplicated, but cancel -> reserve again -> cancel sends a new command.
        current = record.command_id if record is not None else ""
        ref = (
            ReservationRef(account_id=account_id, reservation_id=request.reservation_id)
            if record is not None and record.charger_id == charger.id
            else None
        )
        identity = RequestIdentity(account_id, "cancel", body_of(request), idempotency_key)
        payload = ocpp_mapping.cancel_reservation_payload(request.reservation_id)

        def attempt(after: str) -> Submitted:
            now = self._clock()
            command_id = identity.command_id(after or current)
            command = self._command(
                charger, command_id, CommandAction.CANCEL_RESERVATION, payload, now, ref, identity.request_hash
            )
            budget, too_many = self._channel.budget(account_id)

            def conflict(index: int) -> DomainError:
                return _ChargerChanged() if index < len(checks) else too_many()

            return self._channel.submit(
                command, also=[*checks, budget], on_conflict=conflict, keep_s=identity.replay_s, checks=len(checks)
            )

        def superseded(command: Command) -> bool:
            assert command.outcome is not None
            return command.outcome.kind in NO_ANSWER

        outcome = self._run(charger.connection.queue_url, attempt, superseded, identity.replay_s)
        return ocpp_mapping.cancel_status(outcome)

    # -- records -------------------------------------------------------------------------

    def get(self, principal: Principal, reservation_id: int) -> Reservation:
        account_id = principal.require_account()
        record = self._reservations.get(account_id, reservation_id)
        if record is None or not principal.may_access_charger(account_id, record.charger_id):
            raise NotFound("Reservation not found")
        return record

    def list_reservations(
        self, principal: Principal, where: ReservationFilter, limit: int, cursor: str | None
    ) -> Page[Reservation]:
        """One page of the caller's reservations, in reservationId order."""
        account_id = principal.require_account()
        now = self._clock()

        def keep(reservation: Reservation) -> bool:
            return principal.may_access_charger(account_id, reservation.charger_id) and where.matches(reservation, now)

        selective = where.selective or principal.charger_ids is not None
        if where.charger_id is None:
            return self._reservations.page_for_account(
                account_id, limit=limit, cursor=cursor, keep=keep, selective=selective
            )
        # The charger's owner, not the caller's account: another account's charger
        # (or none) is 404 like any charger outside the key's scope, not an empty list.
        charger = self._registry.get_charger(where.charger_id)
        if charger is None or not principal.may_access_charger(charger.account_id, charger.id):
            raise NotFound("Charger not found")
        return self._reservations.page_for_charger(
            where.charger_id, account_id, limit=limit, cursor=cursor, keep=keep, selective=selective
        )
