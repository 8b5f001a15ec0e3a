"""Simulated chargers against a tiny CSMS built from the `ocpp` library, both OCPP versions.

The CSMS lives in this file so that the simulator is checked against the library a
real CSMS uses, not against itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ocpp import v16, v201
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.exceptions import NotSupportedError
from ocpp.routing import on
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.headers import parse_authorization_basic
from websockets.http11 import Request
from websockets.typing import Subprotocol

from simulator import Behaviour, Fleet, NoReservationSupport, PortStatus, ReserveStatus, SimulatedCharger

PASSWORD = "correct-horse-battery"
CSMS_TIMEOUT = 0.5  # how long the CSMS waits for a charger's answer


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Csms:
    """Records every CALL a charger sends and lets the test send CALLs to it."""

    def __init__(self) -> None:
        self.url = ""
        self.received: list[tuple[str, str, dict[str, Any]]] = []
        self.stations: dict[str, Any] = {}
        self.connections: dict[str, ServerConnection] = {}
        self.credentials: dict[str, tuple[str, str]] = {}
        #: Authorize answers: idTag -> its group; "BLOCKED" as a group blocks the tag instead.
        self.groups: dict[str, str] = {}
        self._changed = asyncio.Event()

    def record(self, ocpp_id: str, action: str, payload: dict[str, Any]) -> None:
        self.received.append((ocpp_id, action, payload))
        self._changed.set()
        self._changed = asyncio.Event()

    def messages(self, ocpp_id: str, action: str) -> list[dict[str, Any]]:
        return [p for i, a, p in self.received if i == ocpp_id and a == action]

    async def wait_message(
        self, ocpp_id: str, action: str, match: Callable[[dict[str, Any]], bool] = lambda _: True
    ) -> dict[str, Any]:
        async with asyncio.timeout(5):
            while True:
                found = [p for p in self.messages(ocpp_id, action) if match(p)]
                if found:
                    return found[-1]
                await self._changed.wait()

    async def call(self, ocpp_id: str, payload: Any) -> Any:
        return await self.stations[ocpp_id].call(payload, suppress=False)


def _csms_classes(csms: Csms) -> dict[str, type]:
    class Csms16(v16.ChargePoint):
        @on("BootNotification")
        def boot(self, **kw: Any) -> Any:
            csms.record(self.id, "BootNotification", kw)
            return result16.BootNotification(current_time=_now(), interval=300, status="Accepted")

        @on("StatusNotification")
        def status(self, **kw: Any) -> Any:
            csms.record(self.id, "StatusNotification", kw)
            return result16.StatusNotification()

        @on("Heartbeat")
        def heartbeat(self, **kw: Any) -> Any:
            csms.record(self.id, "Heartbeat", kw)
            return result16.Heartbeat(current_time=_now())

        @on("Authorize")
        def authorize(self, **kw: Any) -> Any:
            csms.record(self.id, "Authorize", kw)
            group = csms.groups.get(kw["id_tag"])
            if group == "BLOCKED":
                return result16.Authorize(id_tag_info={"status": "Blocked"})
            info = {"status": "Accepted", **({"parent_id_tag": group} if group else {})}
            return result16.Authorize(id_tag_info=info)

        @on("StartTransaction")
        def start_transaction(self, **kw: Any) -> Any:
            csms.record(self.id, "StartTransaction", kw)
            return result16.StartTransaction(transaction_id=77, id_tag_info={"status": "Accepted"})

        @on("StopTransaction")
        def stop_transaction(self, **kw: Any) -> Any:
            csms.record(self.id, "StopTransaction", kw)
            return result16.StopTransaction()

    class Csms201(v201.ChargePoint):
        @on("BootNotification")
        def boot(self, **kw: Any) -> Any:
            csms.record(self.id, "BootNotification", kw)
            return result201.BootNotification(current_time=_now(), interval=300, status="Accepted")

        @on("StatusNotification")
        def status(self, **kw: Any) -> Any:
            csms.record(self.id, "StatusNotification", kw)
            return result201.StatusNotification()

        @on("Heartbeat")
        def heartbeat(self, **kw: Any) -> Any:
            csms.record(self.id, "Heartbeat", kw)
            return result201.Heartbeat(current_time=_now())

        @on("Authorize")
        def authorize(self, **kw: Any) -> Any:
            csms.record(self.id, "Authorize", kw)
            group = csms.groups.get(kw["id_token"]["id_token"])
            if group == "BLOCKED":
                return result201.Authorize(id_token_info={"status": "Blocked"})
            grouped = {"group_id_token": {"id_token": group, "type": "Central"}} if group else {}
            return result201.Authorize(id_token_info={"status": "Accepted", **grouped})

        @on("TransactionEvent")
        def transaction_event(self, **kw: Any) -> Any:
            csms.record(self.id, "TransactionEvent", kw)
            return result201.TransactionEvent()

        @on("ReservationStatusUpdate")
        def reservation_status_update(self, **kw: Any) -> Any:
            csms.record(self.id, "ReservationStatusUpdate", kw)
            return result201.ReservationStatusUpdate()

    return {"ocpp1.6": Csms16, "ocpp2.0.1": Csms201}


@pytest.fixture
async def csms() -> AsyncIterator[Csms]:
    state = Csms()
    classes = _csms_classes(state)

    def check_auth(connection: ServerConnection, request: Request) -> Any:
        headers: Headers = request.headers
        try:
            user, password = parse_authorization_basic(headers["Authorization"])
        except (KeyError, ValueError):
            return connection.respond(401, "missing credentials\n")
        state.credentials[request.path.rsplit("/", 1)[-1]] = (user, password)
        return None

    async def handler(connection: ServerConnection) -> None:
        ocpp_id = connection.request.path.rsplit("/", 1)[-1] if connection.request else ""
        station = classes[connection.subprotocol or ""](ocpp_id, connection, response_timeout=CSMS_TIMEOUT)
        state.stations[ocpp_id] = station
        state.connections[ocpp_id] = connection
        try:
            await station.start()
        except Exception:  # the socket closing is how every session here ends
            return

    async with serve(
        handler,
        "127.0.0.1",
        0,
        subprotocols=[Subprotocol("ocpp1.6"), Subprotocol("ocpp2.0.1")],
        process_request=check_auth,
    ) as server:
        host, port = server.sockets[0].getsockname()[:2]
        state.url = f"ws://{host}:{port}/ocpp"
        yield state


@pytest.fixture(params=["1.6", "2.0.1"])
def version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


Factory = Callable[..., Awaitable[SimulatedCharger]]


@pytest.fixture
async def charger(csms: Csms, version: str) -> AsyncIterator[Factory]:
    """Makes online chargers CP-1, CP-2, ... of the test's OCPP version; stops them afterwards."""
    made: list[SimulatedCharger] = []

    async def make(**options: Any) -> SimulatedCharger:
        sim = SimulatedCharger(
            f"CP-{len(made) + 1}", csms.url, PASSWORD, version, reconnect_delay=(0.05, 0.2), **options
        )
        made.append(sim)
        await sim.start()
        await sim.wait_connected(5)
        return sim

    yield make
    for sim in made:
        await sim.stop()


def reserve_now(
    version: str, rid: int, port: int | None, tag: str = "RFID001", seconds: float = 300, group: str | None = None
) -> Any:
    expiry = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
    if version == "1.6":
        return call16.ReserveNow(
            connector_id=port or 0, expiry_date=expiry, id_tag=tag, reservation_id=rid, parent_id_tag=group
        )
    return call201.ReserveNow(
        id=rid,
        expiry_date_time=expiry,
        id_token={"id_token": tag, "type": "ISO14443"},
        evse_id=port,
        group_id_token={"id_token": group, "type": "Central"} if group else None,
    )


def cancel(version: str, rid: int) -> Any:
    return (call16 if version == "1.6" else call201).CancelReservation(reservation_id=rid)


def reports(version: str, port: int, status: str) -> Callable[[dict[str, Any]], bool]:
    """Matches a StatusNotification payload of either version for `port` in `status`."""
    if version == "1.6":
        return lambda p: p["connector_id"] == port and p["status"] == status
    return lambda p: p["evse_id"] == port and p["connector_id"] == 1 and p["connector_status"] == status


# --- connecting ---------------------------------------------------------------------


async def test_boot_then_status_of_every_port_on_connect(csms: Csms, charger: Factory, version: str) -> None:
    """On connect the charger boots, then reports each port Available."""
    sim = await charger(ports=3)
    actions = [a for i, a, _ in csms.received if i == sim.ocpp_id]
    assert actions[:4] == ["BootNotification"] + ["StatusNotification"] * 3
    for port in (1, 2, 3):
        await csms.wait_message(sim.ocpp_id, "StatusNotification", reports(version, port, "Available"))


async def test_basic_auth_uses_the_identity_as_username(csms: Csms, charger: Factory) -> None:
    """The charger sends HTTP Basic credentials with its identity as the username."""
    sim = await charger()
    assert csms.credentials[sim.ocpp_id] == (sim.ocpp_id, PASSWORD)


async def test_reconnects_after_the_server_closes_with_1012(csms: Csms, charger: Factory) -> None:
    """A service-restart close is followed by a new connection and a new boot."""
    sim = await charger()
    await csms.connections[sim.ocpp_id].close(1012, "service restart")
    await sim.wait_for(lambda c: c.connect_count == 2 and c.connected, 5)
    assert len(csms.messages(sim.ocpp_id, "BootNotification")) == 2
    assert sim.last_disconnect is not None and "1012" in sim.last_disconnect


async def test_fleet_runs_many_chargers_in_one_process(csms: Csms, version: str) -> None:
    """A Fleet of twenty chargers all boot against one CSMS and stop cleanly."""
    ids = [f"FLEET-{n}" for n in range(1, 21)]
    async with Fleet.build(ids, csms.url, password=PASSWORD, version=version) as fleet:
        await fleet.wait_connected(5)
        assert {i for i, a, _ in csms.received if a == "BootNotification"} == set(ids)
    assert not any(sim.connected for sim in fleet)


# --- ReserveNow / CancelReservation ---------------------------------------------------


async def test_reserve_now_accepted_reports_port_reserved(csms: Csms, charger: Factory, version: str) -> None:
    """An accepted ReserveNow marks the port Reserved and sends StatusNotification Reserved."""
    sim = await charger()
    answer = await csms.call(sim.ocpp_id, reserve_now(version, 1001, 1))
    assert answer.status == "Accepted"
    assert sim.port(1).status is PortStatus.RESERVED
    await csms.wait_message(sim.ocpp_id, "StatusNotification", reports(version, 1, "Reserved"))


async def test_same_reservation_id_replaces_the_old_one(csms: Csms, charger: Factory, version: str) -> None:
    """Re-sending a reservation id for another port moves the reservation there."""
    sim = await charger()
    await csms.call(sim.ocpp_id, reserve_now(version, 1001, 1))
    answer = await csms.call(sim.ocpp_id, reserve_now(version, 1001, 2))
    assert answer.status == "Accepted"
    assert [(r.id, r.port) for r in sim.reservations.values()] == [(1001, 2)]
    await csms.wait_message(sim.ocpp_id, "StatusNotification", reports(version, 1, "Available"))
    assert sim.port(1).status is PortStatus.AVAILABLE


async def test_port_reserved_for_another_id_answers_occupied(csms: Csms, charger: Factory, version: str) -> None:
    """A second reservation id on a reserved port is answered Occupied."""
    sim = await charger()
    await csms.call(sim.ocpp_id, reserve_now(version, 1001, 1))
    answer = await csms.call(sim.ocpp_id, reserve_now(version, 1002, 1, tag="RFID002"))
    assert answer.status == "Occupied"
    assert list(sim.reservations) == [1001]


async def test_cancel_known_reservation_frees_the_port(csms: Csms, charger: Factory, version: str) -> None:
    """CancelReservation of a held id is Accepted and the port is reported Available again."""
    sim = await charger()
    await csms.call(sim.ocpp_id, reserve_now(version, 1001, 1))
    await csms.wait_message(sim.ocpp_id, "StatusNotification", reports(version, 1, "Reserved"))
    answer = await csms.call(sim.ocpp_id, cancel(version, 1001))
    assert answer.status == "Accepted"
    await csms.wait_message(sim.ocpp_id, "StatusNotification", reports(version, 1, "Available"))
    assert sim.reservations == {}


async def test_cancel_unknown_reservation_is_rejected(csms: Csms, charger: Factory, version: str) -> None:
    """CancelReservation of an id the charger does not hold is Rejected."""
    sim = await charger()
    answer = await csms.call(sim.ocpp_id, cancel(version, 4242))
    assert answer.status == "Rejected"


async def test_expired_reservation_frees_the_port(csms: Csms, charger: Factory, version: str) -> None:
    """At its expiry the reservation ends and the port is reported Available."""
    sim = await charger()
    await csms.call(sim.ocpp_id, reserve_now(version, 1001, 1, seconds=0.6))
    await csms.wait_message(sim.ocpp_id, "StatusNotification", reports(version, 1, "Reserved"))
    await sim.wait_for(lambda c: not c.reservations, 3)
    await csms.wait_message(sim.ocpp_id, "StatusNotification", reports(version, 1, "Available"))


@pytest.mark.parametrize("version", ["2.0.1"], indirect=True)
async def test_expiry_sends_reservation_status_update_expired(csms: Csms, charger: Factory) -> None:
    """A 2.0.1 charger reports an expired reservation with ReservationStatusUpdate Expired."""
    sim = await charger()
    await csms.call(sim.ocpp_id, reserve_now("2.0.1", 1001, 1, seconds=0.6))
    update = await csms.wait_message(sim.ocpp_id, "ReservationStatusUpdate")
    assert update == {"reservation_id": 1001, "reservation_update_status": "Expired"}


@pytest.mark.parametrize("version", ["1.6"], indirect=True)
@pytest.mark.parametrize(("enabled", "status"), [(False, "Rejected"), (True, "Accepted")])
async def test_connector_zero_follows_its_setting(csms: Csms, charger: Factory, enabled: bool, status: str) -> None:
    """1.6 ReserveNow on connector 0 is accepted only with reserve_connector_zero on."""
    sim = await charger(behaviour=Behaviour(reserve_connector_zero=enabled))
    answer = await csms.call(sim.ocpp_id, reserve_now("1.6", 1001, None))
    assert answer.status == status


@pytest.mark.parametrize("version", ["2.0.1"], indirect=True)
@pytest.mark.parametrize(("enabled", "status"), [(False, "Rejected"), (True, "Accepted")])
async def test_reservation_without_evse_follows_its_setting(
    csms: Csms, charger: Factory, enabled: bool, status: str
) -> None:
    """2.0.1 ReserveNow without evseId is accepted only with non_evse_specific on."""
    sim = await charger(behaviour=Behaviour(non_evse_specific=enabled))
    answer = await csms.call(sim.ocpp_id, reserve_now("2.0.1", 1001, None))
    assert answer.status == status


@pytest.mark.parametrize("version", ["2.0.1"], indirect=True)
async def test_removed_reservation_is_reported(csms: Csms, charger: Factory) -> None:
    """remove_reservation makes a 2.0.1 charger send ReservationStatusUpdate Removed."""
    sim = await charger()
    await csms.call(sim.ocpp_id, reserve_now("2.0.1", 1001, 1))
    sim.remove_reservation(1001)
    update = await csms.wait_message(sim.ocpp_id, "ReservationStatusUpdate")
    assert update == {"reservation_id": 1001, "reservation_update_status": "Removed"}


async def test_faulted_port_loses_its_reservation(csms: Csms, charger: Factory, version: str) -> None:
    """Setting a reserved port Faulted ends the reservation and reports Faulted."""
    sim = await charger()
    await csms.call(sim.ocpp_id, reserve_now(version, 1001, 1))
    sim.set_port_status(1, PortStatus.FAULTED)
    await csms.wait_message(sim.ocpp_id, "StatusNotification", reports(version, 1, "Faulted"))
    assert sim.reservations == {}
    if version == "2.0.1":
        update = await csms.wait_message(sim.ocpp_id, "ReservationStatusUpdate")
        assert update["reservation_update_status"] == "Removed"


# --- transactions -------------------------------------------------------------------


async def test_transaction_carries_the_reservation_it_consumes(csms: Csms, charger: Factory, version: str) -> None:
    """Starting a transaction for the reserved idTag sends the reservation id with it."""
    sim = await charger()
    await csms.call(sim.ocpp_id, reserve_now(version, 1001, 1, tag="RFID001"))
    tx = await sim.start_transaction(1, "RFID001")
    assert tx.reservation_id == 1001 and sim.reservations == {}
    if version == "1.6":
        assert csms.messages(sim.ocpp_id, "Authorize") == [{"id_tag": "RFID001"}]
        started = await csms.wait_message(sim.ocpp_id, "StartTransaction")
        assert started["reservation_id"] == 1001 and started["connector_id"] == 1
        await csms.wait_message(sim.ocpp_id, "StatusNotification", reports(version, 1, "Charging"))
    else:
        started = await csms.wait_message(sim.ocpp_id, "TransactionEvent")
        assert started["event_type"] == "Started" and started["reservation_id"] == 1001
        assert started["evse"] == {"id": 1, "connector_id": 1}
        assert started["id_token"]["id_token"] == "RFID001"


async def test_a_member_of_the_reservations_group_uses_it_and_a_stranger_cannot(
    csms: Csms, charger: Factory, version: str
) -> None:
    """Port 1 reserved for RFID001 of FLEET: a stranger is refused there; RFID002, which Authorize puts
    in FLEET, starts with the reservation; a blocked token is refused anywhere."""
    sim = await charger()
    csms.groups.update({"RFID002": "FLEET", "RFID009": "OTHER", "LOST": "BLOCKED"})
    await csms.call(sim.ocpp_id, reserve_now(version, 1001, 1, tag="RFID001", group="FLEET"))
    with pytest.raises(Exception, match="reserved"):
        await sim.start_transaction(1, "RFID009")
    with pytest.raises(Exception, match="Blocked"):
        await sim.start_transaction(2, "LOST")
    assert set(sim.reservations) == {1001}
    tx = await sim.start_transaction(1, "RFID002")
    assert tx.reservation_id == 1001 and sim.reservations == {}
    authorized = csms.messages(sim.ocpp_id, "Authorize")
    tags = [a["id_tag"] if version == "1.6" else a["id_token"]["id_token"] for a in authorized]
    assert tags == ["RFID009", "LOST", "RFID002"]


async def test_stop_transaction_frees_the_port(csms: Csms, charger: Factory, version: str) -> None:
    """Stopping a transaction reports its end and the port Available."""
    sim = await charger()
    await sim.start_transaction(2, "RFID001")
    await sim.stop_transaction(2)
    if version == "1.6":
        stopped = await csms.wait_message(sim.ocpp_id, "StopTransaction")
        assert stopped["transaction_id"] == 77
    else:
        await csms.wait_message(sim.ocpp_id, "TransactionEvent", lambda p: p["event_type"] == "Ended")
    await csms.wait_message(sim.ocpp_id, "StatusNotification", reports(version, 2, "Available"))


# --- misbehaviour -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (NoReservationSupport.NOT_SUPPORTED, NotSupportedError),
        (NoReservationSupport.NOT_IMPLEMENTED, OcppNotImplemented),
    ],
)
async def test_no_reservation_support_answers_callerror(
    csms: Csms, charger: Factory, version: str, code: NoReservationSupport, error: type[Exception]
) -> None:
    """A charger without reservation support answers ReserveNow with the configured CALLERROR."""
    sim = await charger(behaviour=Behaviour(no_reservations=code))
    with pytest.raises(error):
        await csms.call(sim.ocpp_id, reserve_now(version, 1001, 1))
    assert sim.reservations == {}


async def test_forced_answer_applies_to_its_port_only(csms: Csms, charger: Factory, version: str) -> None:
    """A per-port reserve answer overrides that port while the others behave normally."""
    sim = await charger(port_behaviour={2: Behaviour(reserve_answer=ReserveStatus.UNAVAILABLE)})
    assert (await csms.call(sim.ocpp_id, reserve_now(version, 1001, 2))).status == "Unavailable"
    assert (await csms.call(sim.ocpp_id, reserve_now(version, 1002, 1))).status == "Accepted"


async def test_slow_charger_answers_after_the_delay(csms: Csms, charger: Factory, version: str) -> None:
    """With answer_delay the reply comes late but still comes."""
    sim = await charger(behaviour=Behaviour(answer_delay=0.3))
    started = time.monotonic()
    answer = await csms.call(sim.ocpp_id, reserve_now(version, 1001, 1))
    assert answer.status == "Accepted"
    assert time.monotonic() - started >= 0.3


async def test_never_answer_leaves_the_csms_waiting(csms: Csms, charger: Factory, version: str) -> None:
    """A never-answering charger makes the CSMS call time out, though it did receive it."""
    sim = await charger(behaviour=Behaviour(never_answer=True))
    with pytest.raises(TimeoutError):
        await csms.call(sim.ocpp_id, reserve_now(version, 1001, 1))
    assert sim.received["ReserveNow"] == 1
    assert sim.reservations == {}


async def test_drop_on_reserve_cuts_the_connection_then_reconnects(csms: Csms, charger: Factory, version: str) -> None:
    """drop_on_reserve closes the socket on ReserveNow without answering; the charger comes back."""
    sim = await charger(behaviour=Behaviour(drop_on_reserve=True))
    with pytest.raises(TimeoutError):
        await csms.call(sim.ocpp_id, reserve_now(version, 1001, 1))
    await sim.wait_for(lambda c: c.connect_count == 2 and c.connected, 5)
    assert sim.reservations == {}
