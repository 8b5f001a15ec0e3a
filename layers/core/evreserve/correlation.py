"""Which API request a piece of work belongs to, so one log query follows it everywhere.

An API function binds the request's id (API Gateway's ``requestContext.requestId``, the
``correlation_id`` Powertools puts on the function's own log lines) and, where tracing is
on, the X-Ray trace id for the length of one invocation. A command built meanwhile
carries both to the gateway, which puts them on its lines about that command under the
same keys (``correlation_id``, ``xray_trace_id``): Logs Insights over the function's and
the gateway's log groups then shows the request, the command sent to the charger and the
charger's answer together.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Correlation:
    correlation_id: str
    #: The X-Ray trace id (``1-5759e988-bd862e3fe1be46a994272793``), when tracing is on.
    xray_trace_id: str | None = None


_current: ContextVar[Correlation | None] = ContextVar("evreserve_correlation", default=None)


def trace_root(header: str | None) -> str | None:
    """The trace id of an ``X-Amzn-Trace-Id`` header (``Root=1-...;Parent=...;Sampled=1``)."""
    for part in (header or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == "Root" and value:
            return value
    return None


@contextmanager
def bound(correlation_id: str | None, trace_header: str | None = None) -> Iterator[None]:
    """Everything built inside belongs to this request (nothing, without a request id)."""
    token = _current.set(Correlation(correlation_id, trace_root(trace_header)) if correlation_id else None)
    try:
        yield
    finally:
        _current.reset(token)


def current() -> Correlation | None:
    return _current.get()
