"""The gateway's metrics line: CloudWatch embedded metric format, counters per interval."""

from __future__ import annotations

import json

from evreserve_gateway.logs import JsonFormatter
from evreserve_gateway.metrics import NAMESPACE, GatewayMetrics


def test_an_interval_reports_its_counts_then_starts_from_zero():
    held = [3]
    metrics = GatewayMetrics("gw-1", lambda: held[0])
    metrics.connected()
    metrics.connected()
    metrics.disconnected()
    metrics.refused(401)
    metrics.refused(418)  # counted in the total, no metric of its own
    metrics.command("result", 0.0123)
    metrics.command("timeout", 20.0)
    record = metrics.snapshot()
    (directive,) = record["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == NAMESPACE and directive["Dimensions"] == [["InstanceId"], []]
    defined = {m["Name"] for m in directive["Metrics"]}
    values = {name: record[name] for name in defined}
    assert values["ConnectedChargers"] == 3
    assert (values["Connects"], values["Disconnects"]) == (2, 1)
    assert (values["HandshakesRefused"], values["HandshakesRefused.401"], values["HandshakesRefused.503"]) == (2, 1, 0)
    assert (values["Commands"], values["Commands.result"], values["Commands.timeout"]) == (2, 1, 1)
    assert values["CommandLatency"] == [12.3, 20000.0]
    again = metrics.snapshot()
    assert again["Connects"] == 0 and again["Commands"] == 0 and "CommandLatency" not in again


def test_the_line_carries_the_metrics_at_its_top_level():
    """CloudWatch reads _aws and the values only at the top level of the JSON log event."""
    import logging

    metrics = GatewayMetrics("gw-1", lambda: 0)
    metrics.command("result", 0.5)
    record = logging.makeLogRecord({"msg": "gateway metrics", "embeddedMetrics": metrics.snapshot()})
    line = json.loads(JsonFormatter().format(record))
    assert "_aws" in line and line["Commands.result"] == 1 and line["InstanceId"] == "gw-1"


def test_latencies_are_capped_at_what_one_line_may_carry():
    metrics = GatewayMetrics("gw-1", lambda: 0)
    for _ in range(150):
        metrics.command("result", 0.01)
    record = metrics.snapshot()
    assert record["Commands"] == 150 and len(record["CommandLatency"]) == 100
