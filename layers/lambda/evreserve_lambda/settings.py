"""The API functions' settings: the core's, read once per cold start."""

from __future__ import annotations

from evreserve.settings import CoreSettings, EventSettings, RateLimitSettings


class FunctionSettings(CoreSettings, RateLimitSettings):
    """What every API function reads from its environment (see template.yaml)."""


class PublisherSettings(FunctionSettings, EventSettings):
    """The event publisher's: the Globals every function gets, and the bus."""
