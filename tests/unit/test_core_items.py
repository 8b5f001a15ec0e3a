"""The DynamoDB item shapes round-trip the domain models without loss."""

from datetime import UTC, datetime, timedelta

from evreserve.models import (
    ApiKey,
    BootInfo,
    Charger,
    Command,
    CommandAction,
    CommandOutcome,
    Connection,
    ConnectionState,
    OcppStatus,
    OcppVersion,
    OutcomeKind,
    Port,
    Reservation,
    ReservationRef,
    ReservationState,
)
from evreserve.storage import items
from evreserve.storage.codec import from_item, to_item

NOW = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)


def test_codec_keeps_floats_exact_and_drops_none():
    """22.5 kW comes back as 22.5 (not a binary expansion) and None attributes are not stored."""
    item = to_item({"power": 22.5, "count": 3, "missing": None, "nested": {"a": None, "b": 1.1}})
    assert "missing" not in item
    assert from_item(item) == {"power": 22.5, "count": 3, "nested": {"b": 1.1}}


def test_charger_round_trip_with_live_fields():
    """A charger's item, once the gateway has added connection and port status, reads back whole."""
    charger = Charger(
        id=12,
        account_id=3,
        ocpp_id="CP-1",
        external_id="ext-1",
        ocpp_version=OcppVersion.V201,
        password_hash="scrypt$...",
        ports=(Port(id=34, port_number=1, name="Left", connector_type="cCCS2", maximum_power_kw=150.0),),
        created_at=NOW,
        updated_at=NOW,
    )
    data = items.charger_item(charger)
    connection = Connection(
        state=ConnectionState.CONNECTED,
        timestamp=NOW,
        session_id="s1",
        instance_id="i1",
        queue_url="http://q",
        protocol=OcppVersion.V201,
    )
    data["connection"] = items.connection_data(connection)
    data["portStatus"] = {"1": {"status": "Reserved", "timestamp": items.iso(NOW), "errorCode": "NoError"}}
    data["boot"] = items.boot_data(BootInfo(vendor="V", model="M", timestamp=NOW))
    back = items.charger_from(to_item(data))
    assert back.connection == connection
    assert back.is_connected
    assert back.ports[0].ocpp_status is not None and back.ports[0].ocpp_status.status == "Reserved"
    assert back.ports[0].maximum_power_kw == 150.0
    assert back.boot is not None and back.boot.vendor == "V"
    assert back.model_copy(update={"connection": None, "boot": None, "ports": charger.ports}) == charger


def test_a_201_evses_connectors_read_back_each_with_its_report_and_the_latest_as_the_ports():
    """portStatus "1:1", "1:2" (2.0.1 connectors) beside a report stored before connectors were kept ("1")."""
    charger = Charger(
        id=12,
        account_id=3,
        ocpp_id="CP-1",
        ports=(Port(id=34, port_number=1), Port(id=35, port_number=2)),
        created_at=NOW,
        updated_at=NOW,
    )
    data = items.charger_item(charger)

    def report(state: str, seconds: int, connector: int | None) -> dict:
        return items.ocpp_status_data(
            OcppStatus(status=state, timestamp=NOW + timedelta(seconds=seconds), connector_id=connector)
        )

    data["portStatus"] = {
        "1": report("Available", 0, None),
        items.port_status_key(1, 2): report("Unavailable", 20, 2),
        items.port_status_key(1, 1): report("Occupied", 10, 1),
        items.port_status_key(12, 1): report("Faulted", 30, 1),  # port 12 is not port 1's prefix match
    }
    first, second = items.charger_from(to_item(data)).ports
    assert [(c.connector_id, c.status) for c in first.connectors] == [(1, "Occupied"), (2, "Unavailable")]
    assert first.ocpp_status is not None and first.ocpp_status.status == "Unavailable"
    assert second.connectors == () and second.ocpp_status is None


def test_iso_is_fixed_width_utc_so_string_order_is_time_order():
    """Conditional writes compare stored timestamps as strings; that only works if the format is fixed."""
    plus_two = datetime(2026, 1, 1, 14, 0, 0, tzinfo=UTC).astimezone(tz=UTC).replace(microsecond=0)
    later = plus_two + timedelta(microseconds=1)
    assert items.iso(plus_two) < items.iso(later)
    assert items.iso(plus_two).endswith("+00:00") and len(items.iso(plus_two)) == len(items.iso(later))


def test_reservation_round_trip():
    """A reservation reads back equal to what was written."""
    reservation = Reservation(
        account_id=1,
        reservation_id=1001,
        charger_id=12,
        port_id=34,
        port_number=1,
        id_tag="RFID001",
        expiry_date=NOW + timedelta(hours=1),
        state=ReservationState.PENDING,
        created_at=NOW,
        updated_at=NOW,
        command_id="c1",
    )
    assert items.reservation_from(to_item(items.reservation_item(reservation))) == reservation


def test_command_round_trip_with_outcome():
    """A command and its outcome survive the item shape, including the nested OCPP payload."""
    command = Command(
        command_id="abc",
        account_id=1,
        charger_id=12,
        ocpp_id="CP-1",
        ocpp_version=OcppVersion.V16,
        action=CommandAction.RESERVE_NOW,
        payload={"connectorId": 1, "idTag": "RFID001", "reservationId": 1001, "expiryDate": "2026-12-01T00:00:00.000Z"},
        instance_id="i1",
        session_id="s1",
        created_at=NOW,
        deadline=NOW + timedelta(seconds=20),
        request_hash="h",
        reservation=ReservationRef(account_id=1, reservation_id=1001),
        outcome=CommandOutcome(
            kind=OutcomeKind.RESULT, payload={"status": "Accepted"}, completed_at=NOW, completed_by="i1"
        ),
    )
    assert items.command_from(to_item(items.command_item(command, ttl=123))) == command


def test_api_key_round_trip_and_scope():
    """A key limited to some chargers may touch only those, and only in its own account."""
    key = ApiKey(key_id="k", key_hash="h", name="n", account_id=7, charger_ids=(1, 2), created_at=NOW)
    back = items.api_key_from(to_item(items.api_key_item(key)))
    assert back == key
    assert back.may_access_charger(7, 1)
    assert not back.may_access_charger(7, 3)
    assert not back.may_access_charger(8, 1)
    assert not back.is_admin
