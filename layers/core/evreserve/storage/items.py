"""Domain models <-> DynamoDB items (plain values; ``codec`` makes them attribute values).

The item shape is the storage's own: camelCase attribute names, datetimes as ISO 8601
strings, a charger's live port status in a map keyed by port number so the gateway can
update one port without reading the charger.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..models import (
    Account,
    ApiKey,
    BootInfo,
    Charger,
    ClientCertificate,
    Command,
    CommandOutcome,
    Connection,
    OcppStatus,
    Port,
    Reservation,
    ReservationState,
    UnknownTokenPolicy,
)
from ..resources import ACTIVE_ON, EXPIRES_IN, EXPIRY_SHARDS, GSI1_PK, GSI1_SK, PK, SK, TTL_ATTRIBUTE
from . import keys
from .codec import from_item

_STRUCTURAL = frozenset({PK, SK, GSI1_PK, GSI1_SK, TTL_ATTRIBUTE, "entity", "version"})


def iso(value: datetime) -> str:
    """UTC, fixed width: string order is time order, which conditional writes rely on."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _plain(model: Any, **exclude: bool) -> dict[str, Any]:
    data: dict[str, Any] = model.model_dump(mode="json", by_alias=False, exclude_none=True)
    for name in exclude:
        data.pop(name, None)
    return data


def _key_values(key: keys.Key) -> dict[str, str]:
    return {name: value["S"] for name, value in key.items()}


def account_item(account: Account) -> dict[str, Any]:
    index_pk, _ = keys.accounts_index()
    return {
        **_key_values(keys.account(account.id)),
        **keys.index_attributes(index_pk, keys.account_index_sk(account.id)),
        "entity": "account",
        "id": account.id,
        "name": account.name,
        "createdAt": iso(account.created_at),
        "unknownIdTags": account.unknown_id_tags.value,
    }


def account_from(item: dict[str, Any]) -> Account:
    data = from_item(item)
    return Account(
        id=data["id"],
        name=data["name"],
        created_at=data["createdAt"],
        # Accounts stored before the setting existed keep the behaviour they had.
        unknown_id_tags=data.get("unknownIdTags", UnknownTokenPolicy.ACCEPT.value),
    )


def api_key_item(key: ApiKey) -> dict[str, Any]:
    return {
        **_key_values(keys.api_key(key.key_hash)),
        **keys.index_attributes(keys.api_keys_index_pk(key.account_id), f"APIKEY#{key.key_id}"),
        "entity": "apiKey",
        "keyId": key.key_id,
        "keyHash": key.key_hash,
        "name": key.name,
        "accountId": key.account_id,
        "chargerIds": list(key.charger_ids) if key.charger_ids is not None else None,
        "createdAt": iso(key.created_at),
    }


def api_key_from(item: dict[str, Any]) -> ApiKey:
    data = from_item(item)
    charger_ids = data.get("chargerIds")
    return ApiKey(
        key_id=data["keyId"],
        key_hash=data["keyHash"],
        name=data["name"],
        account_id=data.get("accountId"),
        charger_ids=tuple(charger_ids) if charger_ids is not None else None,
        created_at=data["createdAt"],
    )


def port_data(port: Port) -> dict[str, Any]:
    """A port as stored inside its charger's item (its live status is kept apart)."""
    return {
        "id": port.id,
        "portNumber": port.port_number,
        "name": port.name,
        "connectorType": port.connector_type,
        "maximumPowerKw": port.maximum_power_kw,
    }


def ocpp_status_data(status: OcppStatus) -> dict[str, Any]:
    return {
        "status": status.status,
        "timestamp": iso(status.timestamp),
        "errorCode": status.error_code,
        "vendorErrorCode": status.vendor_error_code,
        "info": status.info,
        "connectorId": status.connector_id,
    }


def port_status_key(port_number: int, connector_id: int | None) -> str:
    """A report's key in the charger item's ``portStatus`` map: ``"3"`` (1.6), ``"3:1"`` (2.0.1 EVSE 3, connector 1).

    Each 2.0.1 connector has an entry of its own, each guarded by its own timestamp, so one
    connector's report never hides another's.
    """
    return str(port_number) if connector_id is None else f"{port_number}:{connector_id}"


def _port_statuses(statuses: dict[str, Any], port_number: int) -> tuple[OcppStatus | None, tuple[OcppStatus, ...]]:
    """A port's latest report (of any connector) and its connectors' own, in connector order."""
    prefix = f"{port_number}:"
    connectors = sorted(
        (status for key, data in statuses.items() if key.startswith(prefix) and (status := _ocpp_status_from(data))),
        key=lambda status: status.connector_id or 0,
    )
    candidates = [s for s in (_ocpp_status_from(statuses.get(str(port_number))), *connectors) if s is not None]
    latest = max(candidates, key=lambda status: status.timestamp) if candidates else None
    return latest, tuple(connectors)


def _ocpp_status_from(data: dict[str, Any] | None) -> OcppStatus | None:
    if not data:
        return None
    return OcppStatus(
        status=data["status"],
        timestamp=data["timestamp"],
        error_code=data.get("errorCode"),
        vendor_error_code=data.get("vendorErrorCode"),
        info=data.get("info"),
        connector_id=data.get("connectorId"),
    )


def connection_from(conn: dict[str, Any]) -> Connection:
    """A connection from its stored map (plain values, as ``from_item`` gives them)."""
    return Connection(
        state=conn["state"],
        timestamp=conn["timestamp"],
        session_id=conn["sessionId"],
        instance_id=conn["instanceId"],
        queue_url=conn["queueUrl"],
        protocol=conn.get("protocol"),
    )


def connection_data(connection: Connection) -> dict[str, Any]:
    return {
        "state": connection.state.value,
        "timestamp": iso(connection.timestamp),
        "sessionId": connection.session_id,
        "instanceId": connection.instance_id,
        "queueUrl": connection.queue_url,
        "protocol": connection.protocol.value if connection.protocol else None,
    }


def boot_data(boot: BootInfo) -> dict[str, Any]:
    return {
        "vendor": boot.vendor,
        "model": boot.model,
        "serialNumber": boot.serial_number,
        "firmwareVersion": boot.firmware_version,
        "timestamp": iso(boot.timestamp),
    }


def charger_item(charger: Charger) -> dict[str, Any]:
    """A new charger's item. Live fields (connection, port status, boot) start empty."""
    return {
        **_key_values(keys.charger(charger.id)),
        **keys.index_attributes(keys.chargers_index_pk(charger.account_id), keys.chargers_index_sk(charger.id)),
        "entity": "charger",
        "version": 1,
        "id": charger.id,
        "accountId": charger.account_id,
        "ocppId": charger.ocpp_id,
        "externalId": charger.external_id,
        "serialNumber": charger.serial_number,
        "ocppVersion": charger.ocpp_version.value if charger.ocpp_version else None,
        "passwordHash": charger.password_hash,
        "allowNoPassword": charger.allow_no_password,
        "securityProfile": charger.security_profile,
        "clientCertificate": (
            {"caPem": charger.client_certificate.ca_pem, "fingerprint": charger.client_certificate.fingerprint_sha256}
            if charger.client_certificate is not None
            else None
        ),
        "ports": [port_data(p) for p in charger.ports],
        # Exists from the start so the gateway can SET portStatus.#n without a read.
        "portStatus": {},
        "createdAt": iso(charger.created_at),
        "updatedAt": iso(charger.updated_at),
    }


#: The attributes of a charger item that the API changes (``RegistryStore.update_charger``);
#: the others are its keys and the live ones the gateway writes.
CHARGER_REGISTRY_FIELDS = (
    "externalId",
    "serialNumber",
    "ocppVersion",
    "passwordHash",
    "allowNoPassword",
    "securityProfile",
    "clientCertificate",
    "ports",
    "updatedAt",
)


def charger_from(item: dict[str, Any]) -> Charger:
    data = from_item(item)
    statuses: dict[str, Any] = data.get("portStatus") or {}
    ports = tuple(
        Port(
            id=p["id"],
            port_number=p["portNumber"],
            name=p.get("name"),
            connector_type=p.get("connectorType"),
            maximum_power_kw=p.get("maximumPowerKw"),
            ocpp_status=latest,
            connectors=connectors,
        )
        for p in data.get("ports", [])
        for latest, connectors in (_port_statuses(statuses, p["portNumber"]),)
    )
    conn = data.get("connection")
    boot = data.get("boot")
    return Charger(
        id=data["id"],
        account_id=data["accountId"],
        ocpp_id=data["ocppId"],
        external_id=data.get("externalId"),
        serial_number=data.get("serialNumber"),
        ocpp_version=data.get("ocppVersion"),
        password_hash=data.get("passwordHash"),
        allow_no_password=data.get("allowNoPassword", False),
        # Chargers stored before profiles were recorded authenticate with their password.
        security_profile=data.get("securityProfile", 2),
        client_certificate=(
            ClientCertificate(ca_pem=cert["caPem"], fingerprint_sha256=cert.get("fingerprint"))
            if (cert := data.get("clientCertificate"))
            else None
        ),
        ports=ports,
        connection=connection_from(conn) if conn else None,
        boot=(
            BootInfo(
                vendor=boot.get("vendor"),
                model=boot.get("model"),
                serial_number=boot.get("serialNumber"),
                firmware_version=boot.get("firmwareVersion"),
                timestamp=boot["timestamp"],
            )
            if boot
            else None
        ),
        created_at=data["createdAt"],
        updated_at=data["updatedAt"],
    )


def reservation_item(reservation: Reservation, ttl: int | None = None) -> dict[str, Any]:
    """The item; ``activeOn`` (the sparse index of active ones) only while Pending or Accepted."""
    active = reservation.state in (ReservationState.PENDING, ReservationState.ACCEPTED)
    return {
        **_key_values(keys.reservation(reservation.account_id, reservation.reservation_id)),
        **keys.index_attributes(
            keys.reservations_by_charger_pk(reservation.charger_id), keys.reservation_sk(reservation.reservation_id)
        ),
        "entity": "reservation",
        "accountId": reservation.account_id,
        "reservationId": reservation.reservation_id,
        "chargerId": reservation.charger_id,
        "portId": reservation.port_id,
        "portNumber": reservation.port_number,
        "idTag": reservation.id_tag,
        "parentIdTag": reservation.parent_id_tag,
        "idTokenType": reservation.id_token_type.value if reservation.id_token_type else None,
        "expiryDate": iso(reservation.expiry_date),
        "state": reservation.state.value,
        "createdAt": iso(reservation.created_at),
        "updatedAt": iso(reservation.updated_at),
        "endedAt": iso(reservation.ended_at) if reservation.ended_at else None,
        "commandId": reservation.command_id,
        "failureCode": reservation.failure_code,
        "answerBy": iso(reservation.answer_by) if reservation.answer_by else None,
        ACTIVE_ON: keys.reservations_by_charger_pk(reservation.charger_id) if active else None,
        EXPIRES_IN: f"EXPIRY#{reservation.reservation_id % EXPIRY_SHARDS}" if active else None,
        TTL_ATTRIBUTE: ttl,
    }


def reservation_from(item: dict[str, Any]) -> Reservation:
    data = from_item(item)
    return Reservation(
        account_id=data["accountId"],
        reservation_id=data["reservationId"],
        charger_id=data["chargerId"],
        port_id=data.get("portId"),
        port_number=data.get("portNumber"),
        id_tag=data["idTag"],
        parent_id_tag=data.get("parentIdTag"),
        id_token_type=data.get("idTokenType"),
        expiry_date=data["expiryDate"],
        state=data["state"],
        created_at=data["createdAt"],
        updated_at=data["updatedAt"],
        ended_at=data.get("endedAt"),
        command_id=data["commandId"],
        failure_code=data.get("failureCode"),
        answer_by=data.get("answerBy"),
    )


def outcome_data(outcome: CommandOutcome) -> dict[str, Any]:
    return _plain(outcome)


def command_item(command: Command, ttl: int) -> dict[str, Any]:
    data = _plain(command)
    return {**_key_values(keys.command(command.command_id)), "entity": "command", TTL_ATTRIBUTE: ttl, **data}


def command_from(item: dict[str, Any]) -> Command:
    data = {k: v for k, v in from_item(item).items() if k not in _STRUCTURAL}
    return Command.model_validate(data)
