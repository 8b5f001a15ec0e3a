"""Key builders: the one place that knows how items are addressed in each table.

Registry table (``pk`` / ``sk``; ``gsi1`` lists things per account):
  ``ACCOUNT#{id}``  / ``ACCOUNT``                account; gsi1 ``ACCOUNTS``
  ``APIKEY#{hash}`` / ``APIKEY``                 API key by hash; gsi1 ``ACCOUNT#{id}#APIKEYS``
  ``CHARGER#{id}``  / ``CHARGER``                charger, its ports, connection and port status;
                                                 gsi1 ``ACCOUNT#{id}#CHARGERS``
  ``OCPPID#{ocppId}`` / ``OCPPID``               unique ocppId -> charger id
  ``EXTID#{account}#{externalId}`` / ``EXTID``   unique externalId per account -> charger id
  ``PORT#{id}``     / ``PORT``                   port id -> charger id, port number
  ``COUNTER#{name}`` / ``COUNTER``               integer id sequences
  ``ACCOUNT#{id}``  / ``IDTAG#{casefolded tag}``   an access ID (driver token), read by the
                                                 gateway with one GetItem per Authorize
  ``ACCOUNT#{id}``  / ``ACCESSID#{id}``          access ID number -> its idTag
Reservations table: ``ACCOUNT#{id}`` / ``RES#{reservationId}``; gsi1 ``CHARGER#{id}`` / ``RES#...``.
Commands table: ``COMMAND#{commandId}``.
Webhooks table: ``ACCOUNT#{id}`` / ``WEBHOOK#{webhookId}`` (the subscription);
  ``WEBHOOK#{webhookId}`` / ``{at ms}#{eventId}#{attempt}`` (its delivery log, newest last, with a TTL).
"""

from __future__ import annotations

from typing import Any

from ..resources import GSI1_PK, GSI1_SK, PK, SK

Key = dict[str, Any]

#: Zero-padded so that string order is numeric order in sort keys.
_ID_WIDTH = 10


def _padded(value: int) -> str:
    return f"{value:0{_ID_WIDTH}d}"


def _key(pk: str, sk: str) -> Key:
    return {PK: {"S": pk}, SK: {"S": sk}}


def account(account_id: int) -> Key:
    return _key(f"ACCOUNT#{account_id}", "ACCOUNT")


def accounts_index() -> tuple[str, str]:
    return "ACCOUNTS", "ACCOUNT#"


def account_index_sk(account_id: int) -> str:
    return f"ACCOUNT#{_padded(account_id)}"


def api_key(key_hash: str) -> Key:
    return _key(f"APIKEY#{key_hash}", "APIKEY")


def api_keys_index_pk(account_id: int | None) -> str:
    return f"ACCOUNT#{account_id if account_id is not None else 'ADMIN'}#APIKEYS"


def charger(charger_id: int) -> Key:
    return _key(f"CHARGER#{charger_id}", "CHARGER")


def charger_id_of(key: Key) -> int:
    """The charger id of a charger item's key (``charger``'s inverse)."""
    return int(str(key[PK]["S"]).removeprefix("CHARGER#"))


def instance_lease(instance_id: str) -> Key:
    return _key(f"INSTANCE#{instance_id}", "LEASE")


#: The index partition listing every gateway instance's lease.
INSTANCES_INDEX_PK = "INSTANCES"


def chargers_index_pk(account_id: int) -> str:
    return f"ACCOUNT#{account_id}#CHARGERS"


def chargers_index_sk(charger_id: int) -> str:
    return f"CHARGER#{_padded(charger_id)}"


def ocpp_id(value: str) -> Key:
    return _key(f"OCPPID#{value}", "OCPPID")


def external_id(account_id: int, value: str) -> Key:
    return _key(f"EXTID#{account_id}#{value}", "EXTID")


def port(port_id: int) -> Key:
    return _key(f"PORT#{port_id}", "PORT")


def counter(name: str) -> Key:
    return _key(f"COUNTER#{name}", "COUNTER")


def reservation(account_id: int, reservation_id: int) -> Key:
    return _key(f"ACCOUNT#{account_id}", f"RES#{_padded(reservation_id)}")


def reservations_by_charger_pk(charger_id: int) -> str:
    return f"CHARGER#{charger_id}"


def reservation_sk(reservation_id: int) -> str:
    return f"RES#{_padded(reservation_id)}"


def command(command_id: str) -> Key:
    return {PK: {"S": f"COMMAND#{command_id}"}}


def commands_counter(account_id: int, window_start: int) -> Key:
    return {PK: {"S": f"COMMANDS#{account_id}#{window_start}"}}


def webhook(account_id: int, webhook_id: str) -> Key:
    return _key(f"ACCOUNT#{account_id}", f"WEBHOOK#{webhook_id}")


def webhooks_pk(account_id: int) -> str:
    return f"ACCOUNT#{account_id}"


WEBHOOK_SK_PREFIX = "WEBHOOK#"


def webhook_deliveries_pk(webhook_id: str) -> str:
    return f"WEBHOOK#{webhook_id}"


def webhook_delivery_sk(at_ms: int, event_id: str, attempt: int) -> str:
    return f"{at_ms:013d}#{event_id}#{attempt:05d}"


def index_attributes(pk: str, sk: str) -> dict[str, str]:
    return {GSI1_PK: pk, GSI1_SK: sk}


# -- access IDs (in the account's own partition) -----------------------------------------

ID_TAG_SK_PREFIX = "IDTAG#"


def access_ids_pk(account_id: int) -> str:
    return f"ACCOUNT#{account_id}"


def access_id_by_tag(account_id: int, tag_key: str) -> Key:
    """``tag_key`` is ``access_ids.tag_key(idTag)``: one item per idTag whatever its case."""
    return _key(access_ids_pk(account_id), ID_TAG_SK_PREFIX + tag_key)


def access_id_pointer(account_id: int, access_id: int) -> Key:
    return _key(access_ids_pk(account_id), f"ACCESSID#{_padded(access_id)}")
