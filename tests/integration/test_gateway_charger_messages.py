"""Everything a charger may send, answered by a real gateway (1.6 and 2.0.1), and what gets stored."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fixtures.gateway_fixtures import charger_session, charger_url, wait_until
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201
from websockets.asyncio.client import ClientConnection, connect

from evreserve.access_ids import AccessId, AuthorizationStatus, TokenType
from evreserve.models import Account, OcppVersion, ReservationState, UnknownTokenPolicy, utcnow
from evreserve.storage.access_ids import AccessIdStore
from evreserve.storage.accounts import AccountStore

pytestmark = pytest.mark.integration

NOW = "2030-01-01T00:00:00.000Z"
V16 = OcppVersion.V16
V201 = OcppVersion.V201


@contextlib.asynccontextmanager
async def raw_charger(gateway, charger, version: OcppVersion) -> AsyncIterator[ClientConnection]:
    async with connect(charger_url(gateway, charger.ocpp_id), subprotocols=[version.subprotocol]) as ws:  # type: ignore[list-item]
        yield ws


async def exchange(ws: ClientConnection, frame: str) -> list:
    await ws.send(frame)
    return json.loads(await asyncio.wait_for(ws.recv(), 5))


# -- OCPP 1.6 -----------------------------------------------------------------------------


async def test_v16_boot_notification_is_accepted_and_stored(gateway, seed_charger, registry):
    """BootNotification is Accepted with the heartbeat interval, and the boot info is stored."""
    charger = seed_charger()
    async with charger_session(gateway, charger, V16) as cp:
        answer = await cp.call(
            call16.BootNotification(
                charge_point_model="M1",
                charge_point_vendor="ACME",
                firmware_version="1.2.3",
                charge_point_serial_number="S9",
            )
        )
        assert (answer.status, answer.interval) == ("Accepted", gateway.settings.gateway_heartbeat_interval_s)
    stored = await wait_until(lambda: registry.get_charger(charger.id).boot, what="boot info")
    assert (stored.vendor, stored.model, stored.firmware_version, stored.serial_number) == ("ACME", "M1", "1.2.3", "S9")


async def test_v16_heartbeat_gets_the_time(gateway, seed_charger):
    """Heartbeat is answered with the current time."""
    async with charger_session(gateway, seed_charger(), V16) as cp:
        assert (await cp.call(call16.Heartbeat())).current_time.endswith("Z")


async def test_v16_status_notification_is_stored(gateway, seed_charger, registry):
    """StatusNotification is answered and the port's status, error code and info are stored."""
    charger = seed_charger()
    async with charger_session(gateway, charger, V16) as cp:
        await cp.call(
            call16.StatusNotification(connector_id=2, error_code="NoError", status="Charging", info="i", timestamp=NOW)
        )
    port = await wait_until(lambda: registry.get_charger(charger.id).port_by_number(2).ocpp_status, what="status")
    assert (port.status, port.error_code, port.info) == ("Charging", "NoError", "i")


async def test_v16_faulted_port_ends_its_reservation(gateway, seed_charger, seed_reservation, reservation_store):
    """A port going Faulted ends its accepted reservation as Removed; other ports' stay."""
    charger = seed_charger()
    on_port_1, on_port_2 = seed_reservation(charger, 1), seed_reservation(charger, 2)
    async with charger_session(gateway, charger, V16) as cp:
        await cp.call(call16.StatusNotification(connector_id=1, error_code="GroundFailure", status="Faulted"))
    ended = await wait_until(
        lambda: (r := reservation_store.get(1, on_port_1.reservation_id)).state is ReservationState.REMOVED and r,
        what="reservation removed",
    )
    assert ended.ended_at is not None
    assert reservation_store.get(1, on_port_2.reservation_id).state is ReservationState.ACCEPTED


async def test_v16_authorize_carries_the_parent_id_tag(gateway, seed_charger, seed_reservation):
    """Authorize for a reserved idTag answers Accepted with the reservation's parentIdTag."""
    charger = seed_charger()
    seed_reservation(charger, id_tag="card-7", parent_id_tag="FLEET-1")
    async with charger_session(gateway, charger, V16) as cp:
        answer = await cp.call(call16.Authorize(id_tag="CARD-7"))
    assert answer.id_tag_info == {"status": "Accepted", "parent_id_tag": "FLEET-1"}


async def test_v16_start_transaction_marks_the_reservation_used(
    gateway, seed_charger, seed_reservation, reservation_store
):
    """StartTransaction with a reservationId gets a transactionId and marks the reservation Used."""
    charger = seed_charger()
    reservation = seed_reservation(charger)
    async with charger_session(gateway, charger, V16) as cp:
        answer = await cp.call(
            call16.StartTransaction(
                connector_id=1, id_tag="TAG-1", meter_start=0, timestamp=NOW, reservation_id=reservation.reservation_id
            )
        )
        assert answer.transaction_id > 0 and answer.id_tag_info["status"] == "Accepted"
    await wait_until(
        lambda: reservation_store.get(1, reservation.reservation_id).state is ReservationState.USED, what="Used"
    )


async def test_v16_other_notifications_are_answered(gateway, seed_charger):
    """StopTransaction, MeterValues, DataTransfer and the security/firmware/diagnostics notices get valid answers."""
    async with charger_session(gateway, seed_charger(), V16) as cp:
        stop = await cp.call(call16.StopTransaction(meter_stop=10, timestamp=NOW, transaction_id=1, id_tag="T"))
        assert stop.id_tag_info == {"status": "Accepted"}
        await cp.call(
            call16.MeterValues(connector_id=1, meter_value=[{"timestamp": NOW, "sampled_value": [{"value": "1"}]}])
        )
        assert (await cp.call(call16.DataTransfer(vendor_id="acme"))).status == "UnknownVendorId"
        await cp.call(call16.SecurityEventNotification(type="FirmwareUpdated", timestamp=NOW, tech_info="t"))
        await cp.call(call16.FirmwareStatusNotification(status="Installed"))
        await cp.call(call16.DiagnosticsStatusNotification(status="Idle"))


# -- OCPP 2.0.1 ---------------------------------------------------------------------------


async def test_v201_boot_notification_is_accepted_and_stored(gateway, seed_charger, registry):
    """2.0.1 BootNotification is Accepted and the charging station's details are stored."""
    charger = seed_charger()
    async with charger_session(gateway, charger, V201) as cp:
        answer = await cp.call(
            call201.BootNotification(
                charging_station={"model": "M2", "vendor_name": "ACME", "firmware_version": "2.0"}, reason="PowerUp"
            )
        )
        assert answer.status == "Accepted"
    stored = await wait_until(lambda: registry.get_charger(charger.id).boot, what="boot info")
    assert (stored.vendor, stored.model, stored.firmware_version) == ("ACME", "M2", "2.0")


async def test_v201_heartbeat_and_status_notification(gateway, seed_charger, registry):
    """2.0.1 Heartbeat is answered, and StatusNotification stores the EVSE's status."""
    charger = seed_charger()
    async with charger_session(gateway, charger, V201) as cp:
        assert (await cp.call(call201.Heartbeat())).current_time
        await cp.call(call201.StatusNotification(timestamp=NOW, connector_status="Occupied", evse_id=1, connector_id=1))
    port = await wait_until(lambda: registry.get_charger(charger.id).port_by_number(1).ocpp_status, what="status")
    assert port.status == "Occupied"


async def test_v201_each_connector_of_an_evse_keeps_its_own_status(gateway, seed_charger, registry):
    """EVSE 1 with two connectors: each keeps its latest report (an older one never overwrites it); the
    port's status is the latest of any connector; 1.6 ports have no connector list."""
    charger = seed_charger()
    later = "2030-01-01T00:00:05.000Z"
    async with charger_session(gateway, charger, V201) as cp:
        for stamp, connector, state in ((NOW, 1, "Occupied"), (later, 2, "Unavailable"), (NOW, 2, "Available")):
            await cp.call(
                call201.StatusNotification(timestamp=stamp, connector_status=state, evse_id=1, connector_id=connector)
            )

    def both() -> Any:
        port = registry.get_charger(charger.id).port_by_number(1)
        return port if len(port.connectors) == 2 else None

    port = await wait_until(both, what="two connectors")
    assert [(c.connector_id, c.status) for c in port.connectors] == [(1, "Occupied"), (2, "Unavailable")]
    assert (port.ocpp_status.status, port.ocpp_status.connector_id) == ("Unavailable", 2)
    assert registry.get_charger(charger.id).port_by_number(2).connectors == ()


async def test_v201_authorize_carries_the_group_id_token(gateway, seed_charger, seed_reservation):
    """2.0.1 Authorize for a reserved token answers with the reservation's groupIdToken."""
    charger = seed_charger()
    seed_reservation(charger, id_tag="TOKEN-1", parent_id_tag="GROUP-1")
    async with charger_session(gateway, charger, V201) as cp:
        answer = await cp.call(call201.Authorize(id_token={"id_token": "TOKEN-1", "type": "ISO14443"}))
    assert answer.id_token_info == {"status": "Accepted", "group_id_token": {"id_token": "GROUP-1", "type": "Central"}}


async def test_v201_transaction_event_marks_the_reservation_used(
    gateway, seed_charger, seed_reservation, reservation_store
):
    """TransactionEvent with a reservationId marks the reservation Used."""
    charger = seed_charger()
    reservation = seed_reservation(charger)
    async with charger_session(gateway, charger, V201) as cp:
        answer = await cp.call(
            call201.TransactionEvent(
                event_type="Started",
                timestamp=NOW,
                trigger_reason="Authorized",
                seq_no=0,
                transaction_info={"transaction_id": "tx-1"},
                id_token={"id_token": "TAG-1", "type": "ISO14443"},
                reservation_id=reservation.reservation_id,
            )
        )
        assert answer.id_token_info == {"status": "Accepted"}
    await wait_until(
        lambda: reservation_store.get(1, reservation.reservation_id).state is ReservationState.USED, what="Used"
    )


# -- drivers' tokens (access IDs), both versions -------------------------------------------


@pytest.fixture
def register_token(gateway_clients, gateway_settings):
    """Register an access ID as the API would have; tags get a suffix of their own per test."""
    store = AccessIdStore(gateway_clients.dynamodb, gateway_settings().registry_table)
    suffix = os.urandom(3).hex()

    def register(account_id: int, tag: str, *, parent: str | None = None, revoked: bool = False) -> str:
        now = utcnow()
        tag, parent = f"{tag}-{suffix}", f"{parent}-{suffix}" if parent else None
        status = AuthorizationStatus.REVOKED if revoked else AuthorizationStatus.AUTHORIZED
        store.create(
            AccessId(
                access_id=store.new_id(),
                account_id=account_id,
                ocpp_id_tag=tag,
                type=TokenType.RFID,
                authorization_status=status,
                parent_id_tag=parent,
                created_at=now,
                updated_at=now,
            )
        )
        return tag

    register.suffix = suffix  # type: ignore[attr-defined]
    return register


async def _authorize(cp, version: OcppVersion, tag: str) -> dict:
    if version is V16:
        return (await cp.call(call16.Authorize(id_tag=tag))).id_tag_info
    return (await cp.call(call201.Authorize(id_token={"id_token": tag, "type": "ISO14443"}))).id_token_info


async def _start(cp, version: OcppVersion, tag: str, reservation_id: int) -> dict:
    if version is V16:
        answer = await cp.call(
            call16.StartTransaction(
                connector_id=1, id_tag=tag, meter_start=0, timestamp=NOW, reservation_id=reservation_id
            )
        )
        return answer.id_tag_info
    answer = await cp.call(
        call201.TransactionEvent(
            event_type="Started",
            timestamp=NOW,
            trigger_reason="Authorized",
            seq_no=0,
            transaction_info={"transaction_id": f"tx-{reservation_id}"},
            id_token={"id_token": tag, "type": "ISO14443"},
            evse={"id": 1, "connector_id": 1},
            reservation_id=reservation_id,
        )
    )
    return answer.id_token_info


@pytest.mark.parametrize("version", [V16, V201])
async def test_a_member_of_the_reservations_group_is_told_the_group_and_uses_the_reservation(
    gateway, seed_charger, seed_reservation, register_token, reservation_store, version
):
    """The reservation names FLEET; another token registered in FLEET gets Accepted with FLEET on
    Authorize and on the start of its transaction, and that start uses the reservation up."""
    charger = seed_charger()
    member = register_token(charger.account_id, "MEMBER", parent="FLEET")
    fleet = f"FLEET-{register_token.suffix}"
    reservation = seed_reservation(charger, id_tag=f"OWNER-{register_token.suffix}", parent_id_tag=fleet)
    group = (
        {"status": "Accepted", "parent_id_tag": fleet}
        if version is V16
        else {"status": "Accepted", "group_id_token": {"id_token": fleet, "type": "Central"}}
    )
    async with charger_session(gateway, charger, version) as cp:
        assert await _authorize(cp, version, member.lower()) == group
        assert await _start(cp, version, member, reservation.reservation_id) == group
    await wait_until(
        lambda: reservation_store.get(charger.account_id, reservation.reservation_id).state is ReservationState.USED,
        what="Used",
    )


@pytest.mark.parametrize("version", [V16, V201])
async def test_a_revoked_token_is_blocked_an_unknown_one_accepted_and_accounts_stay_apart(
    gateway, seed_charger, seed_reservation, register_token, version
):
    """Revoked -> Blocked on Authorize and on a start, even holding a reservation; an unregistered token
    -> Accepted (the default policy); a token revoked in another account is nothing to this charger."""
    charger = seed_charger()
    revoked = register_token(charger.account_id, "LOST", parent="FLEET", revoked=True)
    seed_reservation(charger, id_tag=revoked, parent_id_tag="FLEET")
    elsewhere = register_token(charger.account_id + 1000, "THEIRS", revoked=True)
    async with charger_session(gateway, charger, version) as cp:
        assert await _authorize(cp, version, revoked) == {"status": "Blocked"}
        assert await _start(cp, version, revoked, 424242) == {"status": "Blocked"}
        assert await _authorize(cp, version, f"NOBODY-{register_token.suffix}") == {"status": "Accepted"}
        assert await _authorize(cp, version, elsewhere) == {"status": "Accepted"}


@pytest.mark.parametrize("version", [V16, V201])
async def test_an_account_that_accepts_registered_tokens_only_refuses_the_others(
    gateway, seed_charger, seed_reservation, register_token, gateway_clients, gateway_settings, version
):
    """unknownIdTags Invalid: an unregistered token is Invalid; a registered one and the reserved one are
    still Accepted."""
    accounts = AccountStore(gateway_clients.dynamodb, gateway_settings().registry_table)
    account_id = accounts.next_id("test-account") + 1_000_000
    accounts.create_account(
        Account(id=account_id, name="strict", created_at=utcnow(), unknown_id_tags=UnknownTokenPolicy.REJECT)
    )
    charger = seed_charger(account_id=account_id)
    known = register_token(account_id, "KNOWN")
    reserved = f"GUEST-{register_token.suffix}"
    seed_reservation(charger, id_tag=reserved)
    async with charger_session(gateway, charger, version) as cp:
        assert await _authorize(cp, version, f"STRANGER-{register_token.suffix}") == {"status": "Invalid"}
        assert await _authorize(cp, version, known) == {"status": "Accepted"}
        assert await _authorize(cp, version, reserved.lower()) == {"status": "Accepted"}


@pytest.mark.parametrize(
    ("update", "state"), [("Expired", ReservationState.EXPIRED), ("Removed", ReservationState.REMOVED)]
)
async def test_v201_reservation_status_update_ends_the_reservation(
    gateway, seed_charger, seed_reservation, reservation_store, update, state
):
    """ReservationStatusUpdate Expired / Removed ends the reservation in that state."""
    charger = seed_charger()
    reservation = seed_reservation(charger)
    async with charger_session(gateway, charger, V201) as cp:
        await cp.call(
            call201.ReservationStatusUpdate(reservation_id=reservation.reservation_id, reservation_update_status=update)
        )
    await wait_until(lambda: reservation_store.get(1, reservation.reservation_id).state is state, what=update)


async def test_v201_unavailable_evse_ends_its_reservation(gateway, seed_charger, seed_reservation, reservation_store):
    """An EVSE reported Unavailable ends its accepted reservation as Removed."""
    charger = seed_charger()
    reservation = seed_reservation(charger, 2)
    async with charger_session(gateway, charger, V201) as cp:
        await cp.call(
            call201.StatusNotification(timestamp=NOW, connector_status="Unavailable", evse_id=2, connector_id=1)
        )
    await wait_until(
        lambda: reservation_store.get(1, reservation.reservation_id).state is ReservationState.REMOVED, what="Removed"
    )


async def test_a_charger_cannot_end_another_chargers_reservation(
    gateway, seed_charger, seed_reservation, reservation_store
):
    """A reservationId of another charger of the same account is left alone."""
    charger, other = seed_charger(), seed_charger()
    reservation = seed_reservation(other)
    async with charger_session(gateway, charger, V201) as cp:
        await cp.call(
            call201.ReservationStatusUpdate(
                reservation_id=reservation.reservation_id, reservation_update_status="Removed"
            )
        )
        await cp.call(call201.Heartbeat())
    await asyncio.sleep(0.3)
    assert reservation_store.get(1, reservation.reservation_id).state is ReservationState.ACCEPTED


async def test_v201_other_notifications_are_answered(gateway, seed_charger):
    """MeterValues, DataTransfer, security/firmware notices, NotifyEvent and NotifyReport get valid answers."""
    async with charger_session(gateway, seed_charger(), V201) as cp:
        await cp.call(
            call201.MeterValues(evse_id=1, meter_value=[{"timestamp": NOW, "sampled_value": [{"value": 1.0}]}])
        )
        assert (await cp.call(call201.DataTransfer(vendor_id="acme"))).status == "UnknownVendorId"
        await cp.call(call201.SecurityEventNotification(type="FirmwareUpdated", timestamp=NOW))
        await cp.call(call201.FirmwareStatusNotification(status="Installed"))
        event = {
            "event_id": 1,
            "timestamp": NOW,
            "trigger": "Alerting",
            "actual_value": "1",
            "event_notification_type": "HardWiredNotification",
            "component": {"name": "EVSE"},
            "variable": {"name": "Power"},
        }
        await cp.call(call201.NotifyEvent(generated_at=NOW, seq_no=0, event_data=[event]))
        await cp.call(call201.NotifyReport(request_id=1, generated_at=NOW, seq_no=0))


# -- malformed and unknown frames -----------------------------------------------------------


@pytest.mark.parametrize(("version", "code"), [(V16, "FormationViolation"), (V201, "RpcFrameworkError")])
async def test_invalid_json_gets_the_versions_error_and_the_connection_stays(gateway, seed_charger, version, code):
    """A frame that is not JSON gets the version's CALLERROR (id "-1"), and the charger stays connected."""
    async with raw_charger(gateway, seed_charger(), version) as ws:
        assert await exchange(ws, "[2, nonsense") == [4, "-1", code, "frame is not valid JSON", {}]
        assert (await exchange(ws, '[2,"hb","Heartbeat",{}]'))[:2] == [3, "hb"]


@pytest.mark.parametrize(("version", "code"), [(V16, "FormationViolation"), (V201, "FormatViolation")])
async def test_payload_breaking_the_schema_gets_the_versions_spelling(gateway, seed_charger, version, code):
    """A CALL whose payload has an unknown field gets 1.6 FormationViolation / 2.0.1 FormatViolation."""
    async with raw_charger(gateway, seed_charger(), version) as ws:
        answer = await exchange(ws, '[2,"m1","Heartbeat",{"bogus":1}]')
        assert answer[:3] == [4, "m1", code]


async def test_v201_unknown_message_type_gets_message_type_not_supported(gateway, seed_charger):
    """2.0.1: a frame with an unknown messageTypeId gets MessageTypeNotSupported."""
    async with raw_charger(gateway, seed_charger(), V201) as ws:
        assert (await exchange(ws, '[7,"m2","Foo",{}]'))[:3] == [4, "m2", "MessageTypeNotSupported"]


@pytest.mark.parametrize(("action", "code"), [("FlyToTheMoon", "NotImplemented"), ("GetConfiguration", "NotSupported")])
async def test_unknown_and_unhandled_actions_get_ocpp_j_codes(gateway, seed_charger, action, code):
    """An unknown action gets NotImplemented; a known one the CSMS does not handle gets NotSupported (OCPP-J)."""
    async with raw_charger(gateway, seed_charger(), V16) as ws:
        assert (await exchange(ws, f'[2,"m3","{action}",{{}}]'))[:3] == [4, "m3", code]
