"""Typed settings, read from the environment by each entrypoint at start-up.

Core code receives settings objects; it never reads ``os.environ`` itself. Each
entrypoint composes its own model from these pieces and instantiates it once, so a
missing or malformed variable fails the start, not the first request.
"""

from __future__ import annotations

import os
from typing import Any, Literal, Self

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo


def variables(name: str, field: FieldInfo) -> list[str]:
    """The environment variables a field is read from, first one set wins: its
    ``validation_alias`` (each of its choices) or else its name, upper case."""
    alias = field.validation_alias
    candidates = alias.choices if isinstance(alias, AliasChoices) else [alias or name]
    return [str(candidate).upper() for candidate in candidates]


def _from_environment(model: type[BaseModel]) -> dict[str, str]:
    """Each field's value from its variables, in any case, as pydantic-settings matched them."""
    environment = {name.lower(): value for name, value in os.environ.items()}
    found: dict[str, str] = {}
    for name, field in model.model_fields.items():
        for variable in variables(name, field):
            value = environment.get(variable.lower())
            if value is not None:
                found[name] = value
                break
    return found


class EnvSettings(BaseModel):
    """Settings from the environment; keyword arguments win over it.

    What pydantic-settings did for these flat fields (strings that pydantic coerces to
    numbers, booleans, paths and literals), without its ~60 ms of import on every cold
    start of every function (docs/performance.md).
    """

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    def __init__(self, /, **values: Any) -> None:
        super().__init__(**{**_from_environment(type(self)), **values})

    @classmethod
    def from_environment(cls, **overrides: Any) -> Self:
        """``cls(**overrides)``, spelled so that a type checker knows the required fields
        come from the environment (pydantic's mypy plugin only knows that of BaseSettings)."""
        return cls(**overrides)


class AwsSettings(EnvSettings):
    """How to reach AWS. Endpoints come from ``AWS_ENDPOINT_URL_<SERVICE>`` as botocore reads them."""

    region: str = Field("us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"))
    #: Short timeouts and few attempts: a caller waiting on us must get an answer, not a hang.
    aws_connect_timeout_s: float = Field(2.0, gt=0)
    aws_read_timeout_s: float = Field(5.0, gt=0)
    aws_max_attempts: int = Field(3, ge=1)
    aws_max_pool_connections: int = Field(50, ge=1)
    #: ``awsjson``: evreserve.awsjson's client (a fifth of botocore's CPU per request, no
    #: botocore import); ``botocore``: boto3's clients, for what awsjson leaves out (an
    #: HTTPS proxy) or to compare the two (benchmarks/aws_clients.py).
    aws_client: Literal["awsjson", "botocore"] = "awsjson"


class TableSettings(EnvSettings):
    """Physical table names, set by template.yaml in AWS and by devstack locally."""

    registry_table: str
    reservations_table: str
    commands_table: str
    #: The OCPP message log (template.yaml's OcppMessagesTable).
    ocpp_messages_table: str


class ChannelSettings(EnvSettings):
    """The command channel between the API functions and the gateways."""

    #: How long a charger gets to answer a command. With the grace below it stays
    #: within API Gateway's 29 s integration limit.
    command_timeout_s: float = Field(20.0, gt=0, le=25)
    #: How long the waiting function allows past the deadline for the gateway to
    #: write the outcome before it records a timeout itself.
    command_grace_s: float = Field(2.0, ge=0, le=4)
    #: How long a finished command answers retries of the same request.
    idempotency_window_s: int = Field(300, ge=0)
    #: Per-instance gateway queues are named ``{prefix}{instance_id}``.
    gateway_queue_prefix: str = "evreserve-gw-"
    #: Where a gateway's queue sends messages it failed to process repeatedly.
    command_dlq_url: str | None = None
    #: Commands one account may send per command lifetime (deadline + grace): a bound on
    #: what it has on its way to chargers at once, so that its silent chargers cannot
    #: hold every function instance (ACCOUNT_COMMANDS_IN_FLIGHT; over it 429 TOO_MANY_COMMANDS).
    account_commands_in_flight: int = Field(100, ge=1)


class AccountSettings(EnvSettings):
    """What one account may have."""

    #: API keys per account (MAX_API_KEYS_PER_ACCOUNT): each is a budget of requests.
    max_api_keys_per_account: int = Field(100, ge=1)


class ReservationSettings(EnvSettings):
    """Rules of the reservations themselves."""

    #: The latest expiryDate a reservation may have, in days from now (RESERVATION_MAX_DAYS).
    reservation_max_days: int = Field(365, ge=1, le=3650)
    #: How long a reservation is kept after its expiryDate, ended or not (RESERVATION_RETENTION_DAYS).
    reservation_retention_days: int = Field(90, ge=1, le=3650)


class RateLimitSettings(EnvSettings):
    """Requests per API key (the API family's 200 per minute), counted across instances."""

    #: The table of per-key request counters (template.yaml's RateLimitTable).
    rate_limit_table: str
    rate_limit_per_minute: int = Field(200, ge=1)
    #: All the keys of one account together: an owner cannot multiply the per-key limit by
    #: making keys (RATE_LIMIT_PER_ACCOUNT_PER_MINUTE).
    rate_limit_per_account_per_minute: int = Field(1000, ge=1)


class EventSettings(EnvSettings):
    """Where reservation events go (template.yaml's EventBus)."""

    event_bus_name: str


class WebhookSettings(EnvSettings):
    """Webhooks (template.yaml's WebhooksTable; docs/api.md, "Webhooks")."""

    webhooks_table: str
    max_webhooks_per_account: int = Field(20, ge=1, le=1000)
    #: Lets a webhook's URL be ``http://`` on this machine (the local stack only; never deployed).
    webhook_allow_local_http: bool = False
    webhook_delivery_retention_days: int = Field(30, ge=1, le=3650)


class DeliverySettings(WebhookSettings):
    """Where deliveries queue, and their retries: ``webhook_retry_base_s`` doubling up to
    ``webhook_retry_max_s``, until ``webhook_retry_window_s`` has passed since the first attempt."""

    webhook_queue_url: str
    webhook_retry_base_s: float = Field(30.0, gt=0)
    webhook_retry_max_s: float = Field(3600.0, gt=0)
    webhook_retry_window_s: float = Field(86400.0, gt=0)


class CoreSettings(AwsSettings, TableSettings, ChannelSettings, ReservationSettings, AccountSettings):
    """What every entrypoint needs to build the core's adapters."""
