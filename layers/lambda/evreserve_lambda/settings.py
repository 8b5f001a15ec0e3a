"""The API functions' settings: the core's, read once per cold start."""

from __future__ import annotations

from evreserve.settings import CoreSettings, DeliverySettings, EventSettings, RateLimitSettings, WebhookSettings


class FunctionSettings(CoreSettings, RateLimitSettings, WebhookSettings):
    """What every API function reads from its environment (see template.yaml)."""


class PublisherSettings(FunctionSettings, EventSettings, DeliverySettings):
    """The event publisher's: the Globals every function gets, the bus and the delivery queue."""


class DelivererSettings(FunctionSettings, DeliverySettings):
    """The webhook deliverer's: the Globals every function gets and the delivery queue."""
