"""The OCPP 1.6 / 2.0.1 WebSocket gateway of the EV-charging reservation service (docs/gateway.md)."""

from .bootstrap import Dependencies, bootstrap
from .gateway import Gateway
from .settings import GatewaySettings

__all__ = ["Dependencies", "Gateway", "GatewaySettings", "bootstrap"]
