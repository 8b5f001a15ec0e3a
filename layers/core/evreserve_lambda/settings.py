"""The API functions' settings: the core's, read once per cold start."""

from __future__ import annotations

from evreserve.settings import CoreSettings


class FunctionSettings(CoreSettings):
    """What every API function reads from its environment (see template.yaml)."""
