"""Names that tie the code to the resources declared in ``template.yaml``.

The template declares every table and queue (one source of truth); the code reaches
them through environment variables. This module is the map between the two, so the
local stack can create resources from the template and export the same variables,
and a test can check that every variable the code reads is declared for it.
"""

from __future__ import annotations

from typing import Final

#: Logical id of each DynamoDB table in template.yaml -> the environment variable
#: that carries its physical name.
TABLE_ENV: Final[dict[str, str]] = {
    "RegistryTable": "REGISTRY_TABLE",
    "ReservationsTable": "RESERVATIONS_TABLE",
    "CommandsTable": "COMMANDS_TABLE",
    "RateLimitTable": "RATE_LIMIT_TABLE",
    "OcppMessagesTable": "OCPP_MESSAGES_TABLE",
    "WebhooksTable": "WEBHOOKS_TABLE",
}

#: Logical id of each SQS queue in template.yaml -> the environment variable that
#: carries its URL.
QUEUE_ENV: Final[dict[str, str]] = {
    "CommandDeadLetterQueue": "COMMAND_DLQ_URL",
    "OutcomeSpoolQueue": "OUTCOME_SPOOL_URL",
    "WebhookDeliveryQueue": "WEBHOOK_QUEUE_URL",
}

#: Queues only AWS writes to (a Lambda event source's failure destination): no deployed
#: code reaches them by name; an operator reads them (docs/deploy.md, "Alarms"). The local
#: stack exports their URLs too, for its stand-in of the event source.
DESTINATION_QUEUE_ENV: Final[dict[str, str]] = {
    "PublisherFailureQueue": "PUBLISHER_FAILURE_QUEUE_URL",
    "WebhookDeadLetterQueue": "WEBHOOK_DLQ_URL",
}

#: Logical id of each EventBridge bus in template.yaml -> the variable carrying its name.
BUS_ENV: Final[dict[str, str]] = {"EventBus": "EVENT_BUS_NAME"}

#: Attribute names shared by the tables' key schemas.
PK: Final = "pk"
SK: Final = "sk"
GSI1: Final = "gsi1"
GSI1_PK: Final = "gsi1pk"
GSI1_SK: Final = "gsi1sk"
#: The registry's sparse index of connected chargers by the gateway instance holding them
#: (keys only): what is left to mark disconnected when an instance dies.
BY_INSTANCE: Final = "byInstance"
CONNECTED_TO: Final = "connectedTo"
#: The reservations' sparse index of the active ones by charger (Authorize, port status).
ACTIVE_BY_CHARGER: Final = "activeByCharger"
ACTIVE_ON: Final = "activeOn"
#: The reservations' sparse index of the active ones by expiry (the expiry sweep): a few
#: partitions (``EXPIRY#{reservationId % EXPIRY_SHARDS}``), sorted by ``expiryDate``.
ACTIVE_BY_EXPIRY: Final = "activeByExpiry"
EXPIRES_IN: Final = "expiresIn"
EXPIRY_SHARDS: Final = 4
TTL_ATTRIBUTE: Final = "ttl"
