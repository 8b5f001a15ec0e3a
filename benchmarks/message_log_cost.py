"""What the OCPP message log costs in DynamoDB: writes and bytes per 1,000 messages, dollars per 1,000 chargers.

    .venv/bin/python benchmarks/message_log_cost.py [--smoke] [--chargers 200] [--flush 300 60]

A fleet's day is replayed through the gateway's own log (``evreserve_gateway.traffic``:
its batching, on a simulated clock) and the table's own item builder
(``MessageLogStore.item``: the real packing). Per charger and day, the realistic mix:
one BootNotification, a Heartbeat every 5 minutes, ~50 StatusNotifications, MeterValues
every 60 s for 8 hours (four measurands), each with the answer the gateway gives, with
UUID message ids; chargers start at random phases. Each item is sized by DynamoDB's
rules (attribute names + values) and billed in 1 KB write units.

Compared, on the same messages: one item per message (the obvious layout).
Prices: us-east-1 on-demand, $0.625 per million write request units and $0.25 per
GB-month of storage (each item + 100 bytes of overhead); retention 30 days.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from common import Report

from evreserve.storage.messages import MessageLogStore
from evreserve_gateway.traffic import MessageLog

WRITE_PRICE_PER_MILLION = 0.625
STORAGE_PRICE_PER_GB_MONTH = 0.25
ITEM_OVERHEAD_BYTES = 100
RETENTION_DAYS = 30
DAYS_PER_MONTH = 30.4
BUDGET_PER_1000_CHARGERS = 10.0
DAY_S = 86_400
#: template.yaml's OcppMessageLogFlushSeconds: the budget applies to what is deployed.
DEPLOYED_FLUSH_S = 300.0


def item_size(item: dict[str, Any]) -> int:
    """DynamoDB's size of an item: each attribute's name plus its value."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        ((kind, v),) = value.items()
        if kind == "S":
            size += len(v.encode())
        elif kind == "N":
            digits = len(v.lstrip("-").replace(".", "").lstrip("0")) or 1
            size += math.ceil(digits / 2) + 1
        elif kind == "B":
            size += len(v)
        elif kind == "SS":
            size += sum(len(s.encode()) for s in v)
        else:
            raise ValueError(kind)
    return size


def _iso(t: float) -> str:
    return (datetime(2026, 12, 1, tzinfo=UTC) + timedelta(seconds=t)).isoformat(timespec="milliseconds")[:-6] + "Z"


def charger_day(rng: random.Random) -> list[tuple[float, str, dict[str, Any], str]]:
    """(seconds into the day, action, payload, answer JSON) of one charger's realistic day."""
    events: list[tuple[float, str, dict[str, Any], str]] = []
    boot = rng.uniform(0, DAY_S)
    events.append(
        (
            boot,
            "BootNotification",
            {"chargePointVendor": "Vendor", "chargePointModel": "Model-22", "firmwareVersion": "1.4.2"},
            json.dumps({"status": "Accepted", "currentTime": _iso(boot), "interval": 300}),
        )
    )
    phase = rng.uniform(0, 300)
    events += [
        (t, "Heartbeat", {}, json.dumps({"currentTime": _iso(t)})) for t in (phase + 300 * i for i in range(288))
    ]
    statuses = ["Available", "Preparing", "Charging", "SuspendedEV", "Finishing"]
    for _ in range(50):
        t = rng.uniform(0, DAY_S)
        payload = {
            "connectorId": rng.choice((1, 2)),
            "errorCode": "NoError",
            "status": rng.choice(statuses),
            "timestamp": _iso(t),
        }
        events.append((t, "StatusNotification", payload, "{}"))
    start = rng.uniform(0, DAY_S - 8 * 3600)
    energy = rng.uniform(0, 1e6)
    for i in range(480):
        t = start + 60 * i
        energy += rng.uniform(100, 300)
        sampled = [
            {
                "value": f"{energy:.1f}",
                "context": "Sample.Periodic",
                "measurand": "Energy.Active.Import.Register",
                "unit": "Wh",
            },
            {"value": f"{rng.uniform(6000, 11000):.1f}", "measurand": "Power.Active.Import", "unit": "W"},
            {"value": f"{rng.uniform(10, 16):.2f}", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
            {"value": f"{rng.uniform(225, 235):.1f}", "measurand": "Voltage", "phase": "L1-N", "unit": "V"},
        ]
        payload = {
            "connectorId": 1,
            "transactionId": 4711,
            "meterValue": [{"timestamp": _iso(t), "sampledValue": sampled}],
        }
        events.append((t, "MeterValues", payload, "{}"))
    return sorted(events, key=lambda e: e[0])


class _Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def replay(chargers: int, flush_s: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    clock = _Clock()
    store = MessageLogStore(None, "messages", RETENTION_DAYS)  # type: ignore[arg-type]  # sizes items only
    # No writer: the replay takes the sealed batches itself (take_sealed).
    log = MessageLog(None, flush_s=flush_s, max_bytes=1 << 40, instance_id="bench", clock=clock)  # type: ignore[arg-type]
    timeline = []
    for c in range(chargers):
        traffic = log.for_charger(c + 1, 1, f"CP-{c:05d}", "ocpp1.6")
        timeline += [(t, traffic, action, payload, answer) for t, action, payload, answer in charger_day(rng)]
    timeline.sort(key=lambda e: e[0])
    batched = {"items": 0, "bytes": 0, "wru": 0, "messages": 0}
    naive = {"items": 0, "bytes": 0, "wru": 0}

    def account(batches: list[Any]) -> None:
        for batch in batches:
            size = item_size(store.item(batch))
            batched["items"] += 1
            batched["bytes"] += size
            batched["wru"] += math.ceil(size / 1024)
            batched["messages"] += len(batch.records)

    tick = 0.0
    for t, traffic, action, payload, answer in timeline:
        while tick <= t:  # the writer's loop looks for due batches every second
            clock.now = tick
            log.seal_due()
            account(log.take_sealed())
            tick += 1.0
        clock.now = t
        message_id = str(uuid.UUID(int=rng.getrandbits(128)))
        call = json.dumps([2, message_id, action, payload], separators=(",", ":"))
        reply = f'[3,"{message_id}",{answer}]'
        traffic.received(int(t * 1000), action, call, reply)
        one = {
            "pk": {"S": f"C#{traffic.charger_id}"},
            "sk": {"S": f"{int(t * 1000):013d}#{message_id}"},
            "acct": {"N": "1"},
            "ocpp": {"S": traffic.ocpp_id},
            "proto": {"S": "ocpp1.6"},
            "type": {"S": action},
            "dir": {"N": "0"},
            "payload": {"S": json.dumps(payload, separators=(",", ":"))},
            "response": {"S": answer},
            "ttl": {"N": str(int(t) + RETENTION_DAYS * DAY_S)},
        }
        size = item_size(one)
        naive["items"] += 1
        naive["bytes"] += size
        naive["wru"] += math.ceil(size / 1024)
    log.seal_all()
    account(log.take_sealed())
    return {"messages": len(timeline), "batched": batched, "naive": naive}


def monthly(layout: dict[str, Any], chargers: int) -> dict[str, float]:
    """Dollars a month per 1,000 chargers: writes, and storage at steady state (retention days kept)."""
    per_1000 = 1000 / chargers
    writes = layout["wru"] * per_1000 * DAYS_PER_MONTH / 1e6 * WRITE_PRICE_PER_MILLION
    stored_gb = (layout["bytes"] + ITEM_OVERHEAD_BYTES * layout["items"]) * per_1000 * RETENTION_DAYS / 1e9
    storage = stored_gb * STORAGE_PRICE_PER_GB_MONTH
    return {"writes": round(writes, 2), "storage": round(storage, 2), "total": round(writes + storage, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="5 chargers: checks the script, not the figures")
    parser.add_argument("--chargers", type=int, default=200, help="chargers replayed for one day")
    parser.add_argument(
        "--flush", type=float, nargs="*", default=[300.0, 60.0], help="GATEWAY_MESSAGE_LOG_FLUSH_S values"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    chargers = 5 if args.smoke else args.chargers
    report = Report("message_log_cost", smoke=args.smoke)
    naive_cost = None
    for flush_s in args.flush:
        figures = replay(chargers, flush_s, args.seed)
        n = figures["messages"]
        for name, layout in (("batched", figures["batched"]), ("one item per message", figures["naive"])):
            if name != "batched" and naive_cost is not None:
                continue
            cost = monthly(layout, chargers)
            if name != "batched":
                naive_cost = cost["total"]
            report.add(
                layout=name if name != "batched" else f"batched, flush {flush_s:g} s",
                messages_per_charger_day=round(n / chargers),
                items_per_1000_msgs=round(layout["items"] * 1000 / n, 1),
                wru_per_1000_msgs=round(layout["wru"] * 1000 / n, 1),
                kb_per_1000_msgs=round(layout["bytes"] * 1000 / n / 1024, 1),
                writes_usd=cost["writes"],
                storage_usd=cost["storage"],
                usd_per_1000_chargers_month=cost["total"],
            )
            if name == "batched" and flush_s == DEPLOYED_FLUSH_S:
                report.target(
                    f"$ / 1,000 chargers / month, flush {flush_s:g} s",
                    cost["total"],
                    BUDGET_PER_1000_CHARGERS,
                    at_least=False,
                    trusted=not args.smoke,
                )
    batched_default = report.results[0]["usd_per_1000_chargers_month"]
    if naive_cost:
        report.ratios["one item per message / batched (flush default)"] = round(naive_cost / batched_default, 1)
    report.notes.append(
        f"{chargers} chargers for one day, prices: ${WRITE_PRICE_PER_MILLION}/M WRU, "
        f"${STORAGE_PRICE_PER_GB_MONTH}/GB-month, retention {RETENTION_DAYS} days"
    )
    report.emit()


if __name__ == "__main__":
    main()
