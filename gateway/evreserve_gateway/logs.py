"""Structured JSON logs: one object per line, with the charger identity where there is one.

The keys are Powertools' (the functions' logger): ``level``, ``location``, ``message``,
``timestamp`` (its format), ``service``, then the record's own; a line about a command
carries the API request's ``correlation_id`` and ``xray_trace_id`` under Powertools'
names too. One Logs Insights query reads the functions' and the gateways' log groups alike.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any

#: The ``extra`` key of a record carrying CloudWatch embedded metrics (``_aws`` and the values).
EMBEDDED_METRICS = "embeddedMetrics"
#: LogRecord attributes that are not extra fields.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


#: The ``service`` of every gateway line (the functions' is POWERTOOLS_SERVICE_NAME).
SERVICE = "evreserve-gateway"


def powertools_timestamp(created: float) -> str:
    """``2026-12-07 03:15:15,474+0000``: Powertools' default ``timestamp`` format."""
    moment = datetime.fromtimestamp(created, UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S},{moment.microsecond // 1000:03d}+0000"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "level": record.levelname,
            "location": f"{record.funcName}:{record.lineno}",
            "message": record.getMessage(),
            "timestamp": powertools_timestamp(record.created),
            "service": SERVICE,
            "logger": record.name,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key != EMBEDDED_METRICS:
                entry[key] = value
        metrics = getattr(record, EMBEDDED_METRICS, None)
        if isinstance(metrics, dict):
            # CloudWatch reads embedded metrics only from the top level of a log event.
            entry.update(metrics)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ChargerLogger(logging.LoggerAdapter[logging.Logger]):
    """Adds the charger identity (and any other context) to every record of one connection."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra: Mapping[str, Any] = self.extra or {}
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return msg, kwargs


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_libraries()


def quiet_libraries() -> None:
    # ocpp 2.1.0 logs every frame at INFO, websockets' parser every refused handshake, and
    # picows every accepted connection.
    logging.getLogger("ocpp").setLevel(logging.WARNING)
    logging.getLogger("websockets").setLevel(logging.WARNING)
    logging.getLogger("picows").setLevel(logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)
