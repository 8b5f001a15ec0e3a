"""The API functions' settings: the core's, read once per cold start."""

from __future__ import annotations

from pydantic import Field

from evreserve.settings import (
    CoreSettings,
    DeliverySettings,
    EnvSettings,
    EventSettings,
    RateLimitSettings,
    WebhookSettings,
)


class CorsSettings(EnvSettings):
    """The one browser origin allowed to call the API (template parameter CorsAllowOrigin); empty: none."""

    cors_allow_origin: str = Field(default="", validation_alias="CORS_ALLOW_ORIGIN")


class FunctionSettings(CoreSettings, RateLimitSettings, WebhookSettings, CorsSettings):
    """What every API function reads from its environment (see template.yaml)."""


class PublisherSettings(FunctionSettings, EventSettings, DeliverySettings):
    """The event publisher's: the Globals every function gets, the bus and the delivery queue."""


class DelivererSettings(FunctionSettings, DeliverySettings):
    """The webhook deliverer's: the Globals every function gets and the delivery queue."""
