"""The API functions' settings: the core's, read once per cold start."""

from __future__ import annotations

from evreserve.settings import CoreSettings, RateLimitSettings


class FunctionSettings(CoreSettings, RateLimitSettings):
    """What every API function reads from its environment (see template.yaml)."""
