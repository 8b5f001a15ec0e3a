"""One simulated charger: the connection loop and the OCPP conversation around `ChargerState`."""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import ssl
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.headers import build_authorization_basic
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from simulator._ocpp import ANSWERED, Link, LinkClosed, Plan, RemoteCallError, Reply
from simulator.behaviour import Behaviour
from simulator.frames import FrameTap
from simulator.state import (
    ChargerState,
    EndReason,
    Event,
    Port,
    PortError,
    PortStatus,
    Reservation,
    ReservationEnded,
    ReserveStatus,
    SimulatorError,
    StatusChanged,
    Transaction,
    Version,
    format_timestamp,
    parse_timestamp,
    wire_status,
)

LOG = logging.getLogger("simulator.charger")

_RESERVATION_ACTIONS = frozenset({"ReserveNow", "CancelReservation"})
_DEFAULT_HEARTBEAT = 60.0
# A 22 kW port, so that a stopped transaction reports a plausible meter value.
_WATT_HOURS_PER_SECOND = 22_000 / 3600


class ConnectionState(StrEnum):
    STOPPED = "stopped"
    CONNECTING = "connecting"
    BOOTING = "booting"  # socket open, BootNotification not yet Accepted
    ONLINE = "online"  # booted and initial StatusNotifications sent
    DISCONNECTED = "disconnected"  # waiting to reconnect


class ChargerOffline(SimulatorError):
    """The charger is not online, so it cannot send what was asked."""


class Unauthorized(SimulatorError):
    """The CSMS did not accept the idTag."""


@dataclass(frozen=True)
class _Outgoing:
    action: str
    fields: dict[str, Any]


class _Changes:
    """Wakes every waiter on each change; cheaper to reason about than a Condition here."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def next(self) -> None:
        await self._event.wait()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SimulatedCharger:
    """A charger speaking OCPP 1.6 or 2.0.1 to `{gateway_url}/{ocpp_id}`, reconnecting until stopped.

    Ports are numbered from 1 (1.6 connectorId, 2.0.1 evseId with one connector each).
    Reservations and port states survive reconnects, as on a real charger.
    """

    def __init__(
        self,
        ocpp_id: str,
        gateway_url: str,
        password: str | None = None,
        version: Version | Literal["1.6", "2.0.1"] = "1.6",
        ports: int = 2,
        behaviour: Behaviour | None = None,
        heartbeat_interval: float | None = None,
        *,
        port_behaviour: Mapping[int, Behaviour] | None = None,
        vendor: str = "EVReserve",
        model: str = "Simulator",
        reconnect_delay: tuple[float, float] = (0.5, 30.0),
        boot_retry_interval: float | None = None,
        response_timeout: float = 30.0,
        open_timeout: float = 10.0,
        clock: Callable[[], datetime] = _utcnow,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if ":" in ocpp_id:
            # HTTP Basic cannot carry a username with a colon (OCPP A00.FR.204).
            raise ValueError("an OCPP identity used for Basic auth must not contain ':'")
        self.ocpp_id = ocpp_id
        self.version = Version(version)
        self.url = f"{gateway_url.rstrip('/')}/{quote(ocpp_id, safe='')}"
        try:
            parse_uri(self.url)
        except InvalidURI as exc:
            # Checked here because a bad URL would otherwise only end the background task.
            raise ValueError(str(exc)) from exc
        self.behaviour = behaviour or Behaviour()
        self._port_behaviour: dict[int, Behaviour] = dict(port_behaviour or {})
        self._password = password
        #: For wss://: the server CA to trust and, for security profile 3, the charger's certificate.
        self._tls = tls
        self._heartbeat_override = heartbeat_interval
        self._vendor, self._model = vendor, model
        self._reconnect_min, self._reconnect_max = reconnect_delay
        self._boot_retry = boot_retry_interval
        self._response_timeout = response_timeout
        self._open_timeout = open_timeout
        self._now = clock

        self._state = ChargerState(ports)
        self._changes = _Changes()
        self._outbox: deque[_Outgoing] = deque()
        self._outbox_ready = asyncio.Event()
        self._link: Link | None = None
        self._ws: ClientConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

        self.connection_state = ConnectionState.STOPPED
        self.boot_status: str | None = None
        self.heartbeat_interval: float | None = None
        self.connect_count = 0
        self.last_disconnect: str | None = None
        self.received: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()

    # --- introspection -------------------------------------------------------------

    @property
    def ports(self) -> Mapping[int, Port]:
        """Port number -> Port (status, transaction); read-only by convention."""
        return self._state.ports

    @property
    def reservations(self) -> Mapping[int, Reservation]:
        return self._state.reservations

    @property
    def connected(self) -> bool:
        return self.connection_state is ConnectionState.ONLINE

    def port(self, number: int) -> Port:
        try:
            return self._state.ports[number]
        except KeyError:
            raise PortError(f"{self.ocpp_id} has no port {number}") from None

    def behaviour_for(self, port: int | None) -> Behaviour:
        return self._port_behaviour.get(port, self.behaviour) if port is not None else self.behaviour

    def set_port_behaviour(self, port: int, behaviour: Behaviour | None) -> None:
        """Give one port its own behaviour; None makes it follow the charger's again."""
        self.port(port)
        if behaviour is None:
            self._port_behaviour.pop(port, None)
        else:
            self._port_behaviour[port] = behaviour

    # A timeout argument (ASYNC109) because every test waits with one, and a missed
    # condition should name the charger rather than surface as a bare TimeoutError.
    async def wait_for(
        self,
        predicate: Callable[[SimulatedCharger], bool],
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> None:
        """Wait until `predicate(self)` holds; TimeoutError after `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate(self):
                    await self._changes.next()
        except TimeoutError:
            raise TimeoutError(f"{self.ocpp_id}: condition not met within {timeout}s") from None

    async def wait_connected(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        await self.wait_for(lambda c: c.connected, timeout)

    async def wait_disconnected(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        await self.wait_for(lambda c: not c.connected, timeout)

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting in the background; returns at once (see wait_connected)."""
        if self._tasks:
            return
        self._stopping = False
        self._tasks = [
            asyncio.create_task(self._run(), name=f"{self.ocpp_id} connection"),
            asyncio.create_task(self._expire_reservations(), name=f"{self.ocpp_id} expiry"),
        ]

    async def stop(self) -> None:
        """Close the connection (code 1000) and stop reconnecting."""
        self._stopping = True
        if self._ws is not None:
            # Closed before cancelling: cancellation inside `connect()` would close with 1011.
            await self._ws.close(1000, "charger stopped")
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._set_connection(ConnectionState.STOPPED)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def drop_connection(self) -> None:
        """Cut the socket without a close frame, as a lost network would; the charger reconnects."""
        if self._ws is not None:
            self._ws.transport.abort()

    # --- things a person does at the charger ------------------------------------------

    def set_port_status(self, port: int, status: PortStatus | str) -> None:
        """Set a port's status and report it; Faulted/Unavailable end the port's reservation."""
        self._publish(self._state.set_status(port, PortStatus(status)))

    def remove_reservation(self, reservation_id: int) -> None:
        """Drop a reservation on the charger's own initiative (2.0.1 reports ReservationStatusUpdate Removed)."""
        self._publish(self._state.remove(reservation_id))

    async def start_transaction(self, port: int, id_tag: str) -> Transaction:
        """Authorize `id_tag` and start charging on `port`, consuming the reservation it (or its group) holds."""
        link = self._online_link()
        # The group in the answer is what lets a member of a reservation's group use it.
        if self.version is Version.V16:
            info = (await self._call(link, "Authorize", id_tag=id_tag))["id_tag_info"]
            parent = info.get("parent_id_tag")
        else:
            token = {"id_token": id_tag, "type": "ISO14443"}
            info = (await self._call(link, "Authorize", id_token=token))["id_token_info"]
            parent = (info.get("group_id_token") or {}).get("id_token")
        if info["status"] != "Accepted":
            raise Unauthorized(f"{id_tag}: {info['status']}")
        tx, events = self._state.begin_transaction(port, id_tag, parent, self._now())
        self._touch()
        try:
            if self.version is Version.V16:
                answer = await self._call(
                    link,
                    "StartTransaction",
                    connector_id=port,
                    id_tag=id_tag,
                    meter_start=0,
                    timestamp=format_timestamp(tx.started_at),
                    reservation_id=tx.reservation_id,
                )
                tx.transaction_id = int(answer["transaction_id"])
            else:
                tx.transaction_id = str(uuid.uuid4())
                await self._call(
                    link,
                    "TransactionEvent",
                    event_type="Started",
                    timestamp=format_timestamp(tx.started_at),
                    trigger_reason="Authorized",
                    seq_no=tx.seq_no,
                    transaction_info={"transaction_id": tx.transaction_id, "charging_state": "Charging"},
                    id_token={"id_token": id_tag, "type": "ISO14443"},
                    evse={"id": port, "connector_id": 1},
                    reservation_id=tx.reservation_id,
                )
                tx.seq_no += 1
        finally:
            self._publish(events)
        LOG.info("%s port %d: transaction %s started for %s", self.ocpp_id, port, tx.transaction_id, id_tag)
        return tx

    async def stop_transaction(self, port: int) -> Transaction:
        link = self._online_link()
        current = self.port(port).transaction
        if current is None or current.transaction_id is None:
            raise PortError(f"port {port} has no started transaction")
        tx, events = self._state.end_transaction(port)
        now = self._now()
        meter = int((now - tx.started_at).total_seconds() * _WATT_HOURS_PER_SECOND)
        try:
            if self.version is Version.V16:
                await self._call(
                    link,
                    "StopTransaction",
                    meter_stop=meter,
                    timestamp=format_timestamp(now),
                    transaction_id=int(tx.transaction_id or 0),
                    reason="Local",
                    id_tag=tx.id_tag,
                )
            else:
                await self._call(
                    link,
                    "TransactionEvent",
                    event_type="Ended",
                    timestamp=format_timestamp(now),
                    trigger_reason="StopAuthorized",
                    seq_no=tx.seq_no,
                    transaction_info={
                        "transaction_id": str(tx.transaction_id),
                        "charging_state": "Idle",
                        "stopped_reason": "Local",
                    },
                    id_token={"id_token": tx.id_tag, "type": "ISO14443"},
                    evse={"id": port, "connector_id": 1},
                )
        finally:
            self._publish(events)
        LOG.info("%s port %d: transaction %s stopped", self.ocpp_id, port, tx.transaction_id)
        return tx

    # --- CallHandler: incoming CALLs from the CSMS ----------------------------------

    def plan(self, action: str, payload: Mapping[str, Any]) -> Plan:
        self.received[action] += 1
        self._touch()
        if action not in _RESERVATION_ACTIONS:
            return Plan()
        b = self.behaviour_for(self._port_named_by(action, payload))
        if b.no_reservations is not None:
            return Plan(error=b.no_reservations.value)
        if action == "ReserveNow" and b.drop_on_reserve:
            LOG.info("%s: dropping the connection on ReserveNow", self.ocpp_id)
            return Plan(drop=True)
        if b.never_answer:
            return Plan(ignore=True)
        return Plan(delay=b.answer_delay)

    def answer(self, action: str, payload: dict[str, Any]) -> Reply:
        if action not in ANSWERED[self.version]:
            raise ValueError(f"no answer for {action}")  # the link only routes ANSWERED actions
        handler: Callable[[dict[str, Any]], Reply] = getattr(self, f"_answer_{_snake(action)}")
        return handler(payload)

    def _port_named_by(self, action: str, payload: Mapping[str, Any]) -> int | None:
        if action == "CancelReservation":
            held = self._state.reservations.get(payload.get("reservation_id", -1))
            return held.port if held is not None else None
        port = payload.get("connector_id" if self.version is Version.V16 else "evse_id")
        return port if isinstance(port, int) and port > 0 else None

    def _answer_reserve_now(self, payload: dict[str, Any]) -> Reply:
        if self.version is Version.V16:
            rid, port = payload["reservation_id"], payload["connector_id"] or None
            expiry, tag, group = payload["expiry_date"], payload["id_tag"], payload.get("parent_id_tag")
            unspecific_ok = self.behaviour.reserve_connector_zero
        else:
            rid, port = payload["id"], payload.get("evse_id") or None
            expiry, tag = payload["expiry_date_time"], payload["id_token"]["id_token"]
            group = (payload.get("group_id_token") or {}).get("id_token")
            unspecific_ok = self.behaviour.non_evse_specific
        try:
            expires_at = parse_timestamp(expiry)
        except ValueError:
            LOG.warning("%s: ReserveNow %s with unreadable expiry %r", self.ocpp_id, rid, expiry)
            return Reply({"status": ReserveStatus.REJECTED.value})
        status, events = self._state.reserve(
            reservation_id=rid,
            port=port,
            id_tag=tag,
            group_id_tag=group,
            expires_at=expires_at,
            now=self._now(),
            allow_unspecific=unspecific_ok,
            forced=self.behaviour_for(port).reserve_answer,
        )
        where = f"port {port}" if port is not None else "any port"
        LOG.info("%s: ReserveNow %s on %s for %s until %s -> %s", self.ocpp_id, rid, where, tag, expiry, status)
        self._touch()
        return Reply({"status": status.value}, after=functools.partial(self._publish, events))

    def _answer_cancel_reservation(self, payload: dict[str, Any]) -> Reply:
        status, events = self._state.cancel(payload["reservation_id"])
        LOG.info("%s: CancelReservation %s -> %s", self.ocpp_id, payload["reservation_id"], status)
        self._touch()
        return Reply({"status": status.value}, after=functools.partial(self._publish, events))

    def _answer_get_configuration(self, payload: dict[str, Any]) -> Reply:
        supports = self.behaviour.no_reservations is None
        known = {
            "SupportedFeatureProfiles": "Core,Reservation,RemoteTrigger" if supports else "Core,RemoteTrigger",
            "ReserveConnectorZeroSupported": str(self.behaviour.reserve_connector_zero).lower(),
            "HeartbeatInterval": str(int(self.heartbeat_interval or _DEFAULT_HEARTBEAT)),
            "NumberOfConnectors": str(len(self.ports)),
        }
        asked: list[str] = payload.get("key") or list(known)
        found = [{"key": k, "readonly": True, "value": known[k]} for k in asked if k in known]
        unknown = [k for k in asked if k not in known]
        return Reply({"configuration_key": found, "unknown_key": unknown or None})

    def _answer_get_variables(self, payload: dict[str, Any]) -> Reply:
        reservation_ctrlr = {
            "available": self.behaviour.no_reservations is None,
            "enabled": self.behaviour.no_reservations is None,
            "nonevsespecific": self.behaviour.non_evse_specific,
        }
        results = []
        for item in payload["get_variable_data"]:
            component, variable = item["component"], item["variable"]
            result: dict[str, Any] = {"component": component, "variable": variable}
            if component["name"] != "ReservationCtrlr":
                result["attribute_status"] = "UnknownComponent"
            elif variable["name"].lower() not in reservation_ctrlr:
                result["attribute_status"] = "UnknownVariable"
            else:
                result["attribute_status"] = "Accepted"
                result["attribute_value"] = str(reservation_ctrlr[variable["name"].lower()]).lower()
            results.append(result)
        return Reply({"get_variable_result": results})

    # --- the connection loop -----------------------------------------------------------

    async def _run(self) -> None:
        delay = self._reconnect_min
        headers = (
            {"Authorization": build_authorization_basic(self.ocpp_id, self._password)}
            if self._password is not None
            else None
        )
        while True:
            self._set_connection(ConnectionState.CONNECTING)
            count_before = self.connect_count
            try:
                async with connect(
                    self.url,
                    subprotocols=[Subprotocol(self.version.subprotocol)],
                    additional_headers=headers,
                    open_timeout=self._open_timeout,
                    close_timeout=2,
                    ssl=self._tls if self.url.startswith("wss:") else None,
                ) as ws:
                    if ws.subprotocol != self.version.subprotocol:
                        self.last_disconnect = f"server did not accept subprotocol {self.version.subprotocol}"
                    else:
                        await self._session(ws)
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
                self.last_disconnect = _describe(exc)
            if self._stopping:
                return
            self._set_connection(ConnectionState.DISCONNECTED)
            if self.connect_count > count_before:
                delay = self._reconnect_min  # back off only while connecting keeps failing
            # Jitter keeps a fleet from reconnecting in lockstep after a gateway restart.
            wait = delay * random.uniform(0.8, 1.2)
            LOG.warning("%s: %s; reconnecting in %.1fs", self.ocpp_id, self.last_disconnect, wait)
            await asyncio.sleep(wait)
            delay = min(delay * 2, self._reconnect_max)

    async def _session(self, ws: ClientConnection) -> None:
        link = Link(
            self.ocpp_id,
            self.version,
            FrameTap(ws, self.ocpp_id),
            self,
            drop=ws.transport.abort,
            response_timeout=self._response_timeout,
        )
        self._link, self._ws = link, ws
        reader = asyncio.create_task(link.run())
        online = asyncio.create_task(self._online(link))
        try:
            await asyncio.wait({reader, online}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._link = self._ws = None
            reader.cancel()
            online.cancel()
            ended = await asyncio.gather(reader, online, return_exceptions=True)
        reason = next((e for e in ended if isinstance(e, Exception)), None)
        if isinstance(reason, ConnectionClosed | LinkClosed | TimeoutError | RemoteCallError):
            self.last_disconnect = _describe(reason)
        elif reason is not None:
            LOG.error("%s: session failed", self.ocpp_id, exc_info=reason)
            self.last_disconnect = f"session failed: {reason!r}"
        else:
            self.last_disconnect = "connection closed"

    async def _online(self, link: Link) -> None:
        self._set_connection(ConnectionState.BOOTING)
        interval = await self._boot(link)
        self.heartbeat_interval = self._heartbeat_override or interval or _DEFAULT_HEARTBEAT
        # Statuses queued before this connection are stale; the full report below replaces them.
        kept = [item for item in self._outbox if item.action != "StatusNotification"]
        self._outbox.clear()
        self._outbox.extend(kept)
        for number, port in self.ports.items():
            await self._call(link, "StatusNotification", **self._status_fields(number, port.status))
        self.connect_count += 1
        self._set_connection(ConnectionState.ONLINE)
        LOG.info("%s: online, heartbeat every %ss", self.ocpp_id, self.heartbeat_interval)
        heartbeat = asyncio.create_task(self._heartbeat(link, self.heartbeat_interval))
        try:
            await self._drain_outbox(link)
        finally:
            heartbeat.cancel()

    async def _boot(self, link: Link) -> float:
        if self.version is Version.V16:
            fields: dict[str, Any] = {"charge_point_vendor": self._vendor, "charge_point_model": self._model}
        else:
            fields = {"charging_station": {"vendor_name": self._vendor, "model": self._model}, "reason": "PowerUp"}
        while True:
            answer = await self._call(link, "BootNotification", **fields)
            self.boot_status = str(answer["status"])
            self._touch()
            interval = float(answer["interval"])
            if self.boot_status == "Accepted":
                return interval
            retry = self._boot_retry or interval or 10.0
            LOG.info("%s: boot %s, retrying in %ss", self.ocpp_id, self.boot_status, retry)
            await asyncio.sleep(retry)

    async def _heartbeat(self, link: Link, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self._call(link, "Heartbeat")
            except (RemoteCallError, TimeoutError) as exc:
                LOG.warning("%s: heartbeat failed: %s", self.ocpp_id, _describe(exc))

    async def _drain_outbox(self, link: Link) -> None:
        while True:
            while not self._outbox:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
            item = self._outbox[0]
            try:
                await self._call(link, item.action, **item.fields)
            except (RemoteCallError, TimeoutError) as exc:
                # A refused or unanswered notification is not retried, as on a real charger.
                LOG.warning("%s: %s not delivered: %s", self.ocpp_id, item.action, _describe(exc))
            # LinkClosed propagates and leaves the item queued for the next connection.
            self._outbox.popleft()

    async def _expire_reservations(self) -> None:
        while True:
            due = self._state.next_expiry()
            wait = None if due is None else max(0.0, (due - self._now()).total_seconds())
            try:
                async with asyncio.timeout(wait):
                    await self._changes.next()
            except TimeoutError:
                pass
            events = self._state.expire(self._now())
            if events:
                self._publish(events)

    # --- helpers -------------------------------------------------------------------

    async def _call(self, link: Link, action: str, **fields: Any) -> dict[str, Any]:
        self.sent[action] += 1
        self._touch()
        return await link.call(action, **fields)

    def _online_link(self) -> Link:
        if self._link is None or not self.connected:
            raise ChargerOffline(f"{self.ocpp_id} is {self.connection_state}")
        return self._link

    def _publish(self, events: list[Event]) -> None:
        """Report state changes to the CSMS the way a charger of this version does."""
        for event in events:
            if isinstance(event, StatusChanged):
                LOG.info("%s port %d: %s", self.ocpp_id, event.port, event.status)
                # A change published after its answer went out may already be overtaken
                # (say, by an expiry in between); the later change reports the port instead.
                stale = self._state.ports[event.port].status is not event.status
                # Offline, a status change is not queued: the report after the next boot carries it.
                if not stale and self.connection_state in (ConnectionState.BOOTING, ConnectionState.ONLINE):
                    self._enqueue("StatusNotification", self._status_fields(event.port, event.status))
            elif isinstance(event, ReservationEnded):
                LOG.info("%s: reservation %d ended (%s)", self.ocpp_id, event.reservation.id, event.reason)
                # 1.6 has no message for this; 2.0.1 reports expiry and removal, not cancel or use.
                if self.version is Version.V201 and event.reason in (EndReason.EXPIRED, EndReason.REMOVED):
                    self._enqueue(
                        "ReservationStatusUpdate",
                        {"reservation_id": event.reservation.id, "reservation_update_status": event.reason.value},
                    )
        self._touch()

    def _enqueue(self, action: str, fields: dict[str, Any]) -> None:
        self._outbox.append(_Outgoing(action, fields))
        self._outbox_ready.set()

    def _status_fields(self, port: int, status: PortStatus) -> dict[str, Any]:
        reported = wire_status(status, self.version)
        if self.version is Version.V16:
            return {
                "connector_id": port,
                "error_code": "NoError",
                "status": reported,
                "timestamp": format_timestamp(self._now()),
            }
        return {
            "timestamp": format_timestamp(self._now()),
            "connector_status": reported,
            "evse_id": port,
            "connector_id": 1,
        }

    def _set_connection(self, state: ConnectionState) -> None:
        if state is not self.connection_state:
            self.connection_state = state
            self._touch()

    def _touch(self) -> None:
        self._changes.notify()


def _snake(action: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in action).lstrip("_")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        frame = exc.rcvd
        if frame is None:
            return "connection lost without a close frame"
        return f"server closed the connection ({frame.code} {frame.reason})".rstrip()
    return str(exc) or type(exc).__name__
