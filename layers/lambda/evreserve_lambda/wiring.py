"""The services of one function instance, built on its first request.

Apart from ``app`` so that the authorizer, which answers no HTTP route, reaches them
without importing Powertools' event handler, OpenAPI and tracing machinery.
"""

from __future__ import annotations

from evreserve.services.bootstrap import Services, build_services

from .settings import FunctionSettings

_services: Services | None = None


def services() -> Services:
    """The services of this function instance, built on first use (no AWS calls at import)."""
    global _services
    if _services is None:
        _services = build_services(FunctionSettings.from_environment())
    return _services


def use_services(value: Services | None) -> None:
    """Replace the services (tests), or drop them so the next request rebuilds them."""
    global _services
    _services = value
