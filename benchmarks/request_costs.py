"""AWS requests and Lambda invocations per reservation and per cancel, counted exactly.

    .venv/bin/python benchmarks/request_costs.py [--smoke] [--rounds 10]

The whole local stack runs in this process (``stack.FullStack``), so one hook on the
AWS clients' send (``stack.on_every_request``) sees every HTTP request any piece makes
to DynamoDB Local or the SQS server (retries included: one count per attempt, as AWS bills), attributed
to the gateway or the functions by thread; another around the local API's
``FunctionPool.invoke`` counts invocations. Each round is one reservation (POST, answered
Accepted) then its cancel, sequential, with the counts taken after each request and
the gateway's trailing writes (its handled messages are not deleted: they expire). The
first round (cold functions, authorizer cache miss, port pointer not yet remembered)
is reported apart. Then reservations and cancels at 10 concurrent, where a receive
may take several messages. A gateway long poll that returned nothing is idle cost, not
a reservation's, and is listed apart; so is the stand-in for Lambda's DynamoDB Streams
poller (``stream-*``: AWS does not bill a trigger's GetRecords).

The OCPP message log stores a charger's messages in batches every
``GATEWAY_MESSAGE_LOG_FLUSH_S`` (300 s deployed), 25 batches a BatchWriteItem: far too
seldom to land in a window. Its share is the messages the request logged (counted as the
log takes them) times the BatchWriteItems per message of a fleet's day at the deployed
flush (``message_log_cost.replay``: the gateway's own batching and item packing).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections import Counter
from contextlib import ExitStack
from typing import Any

from common import LOG_DIR, REPO_ROOT, Report
from message_log_cost import DEPLOYED_FLUSH_S, replay
from reservation_roundtrip import ID_TAG, expiry, run_stack_level
from stack import FullStack, Hops, InvocationCounter, RequestCounter, group

#: The gateway deletes the message and logs after the answer went out.
SETTLE_S = 0.5
#: What the gateway does on a timer whether or not anyone reserves: not a reservation's cost.
IDLE = frozenset({"ReceiveMessage(empty)", "GetItem(probe)"})
#: The same, recognised by the cause ``stack.RequestCounter`` names.
IDLE_CAUSES = ("[gateway's lease]",)


def idle(op: str) -> bool:
    return op in IDLE or any(cause in op for cause in IDLE_CAUSES)


#: The thread-name prefix of the local stand-in for Lambda's DynamoDB Streams poller.
STREAM_POLLER = "stream-"
#: Batches per BatchWriteItem (DynamoDB's most).
LOG_BATCHES_PER_REQUEST = 25


class LoggedRecords:
    """Counts the records (a CALL and its answer) the gateway's message log takes, while enabled."""

    def __init__(self) -> None:
        self.count = 0
        self.enabled = False

    def install(self) -> None:
        from evreserve_gateway.traffic import MessageLog

        add = MessageLog.add
        counter = self

        def counted(log: Any, traffic: Any, record: Any) -> None:
            if counter.enabled:
                counter.count += 1
            add(log, traffic, record)

        MessageLog.add = counted  # type: ignore[method-assign]

    def take(self) -> int:
        taken, self.count = self.count, 0
        return taken


def log_requests_per_record() -> float:
    """BatchWriteItem requests per logged record over a fleet's day at the deployed flush."""
    figures = replay(50, DEPLOYED_FLUSH_S, seed=1)
    return figures["batched"]["items"] / LOG_BATCHES_PER_REQUEST / figures["batched"]["messages"]


def one(stack: FullStack, client: Any, kind: str, rid: int) -> str:
    charger = stack.chargers[0]
    if kind == "reserve":
        body = {"portId": charger.port_id, "expiryDate": expiry(), "idTag": ID_TAG, "reservationId": rid}
        response = client.post("/api/ocpp/reservations", json=body)
    else:
        response = client.post(
            "/api/ocpp/reservations/cancel", json={"chargerId": charger.charger_id, "reservationId": rid}
        )
    return (
        str(response.json().get("data", {}).get("status"))
        if response.status_code == 200
        else f"HTTP {response.status_code}: {response.text[:200]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="two rounds")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=10, help="then reserve+cancel cycles at this concurrency")
    args = parser.parse_args()
    rounds = 2 if args.smoke else args.rounds
    concurrency, per_worker = (2, 2) if args.smoke else (args.concurrency, 10)
    report = Report("request_costs", smoke=args.smoke)
    requests, invocations, logged = RequestCounter(), InvocationCounter(), LoggedRecords()
    requests.install()
    invocations.install()
    logged.install()

    import httpx

    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with ExitStack() as cm, (LOG_DIR / "request_costs-functions.log").open("w") as function_log:
        # The functions print their metrics (EMF) to stdout; this script's stdout is its report.
        cm.enter_context(contextlib.redirect_stdout(function_log))
        stack = FullStack(max(1, concurrency), prefix="COST-").start(cm)
        if stack.problem:
            report.todo.append(f"not measured: {stack.problem}")
            cm.close()
            report.emit()
            return
        client = cm.enter_context(
            httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {stack.api_key}"}, timeout=35)
        )
        totals: dict[str, Counter[tuple[str, str, str]]] = {"reserve": Counter(), "cancel": Counter()}
        calls: dict[str, Counter[str]] = {"reserve": Counter(), "cancel": Counter()}
        statuses: dict[str, Counter[str]] = {"reserve": Counter(), "cancel": Counter()}
        records: Counter[str] = Counter()
        first: dict[str, Any] = {}
        settle_s = SETTLE_S
        for n in range(rounds + 1):
            for kind in ("reserve", "cancel"):
                requests.take()
                invocations.take()
                logged.take()
                requests.enabled = logged.enabled = True
                status = one(stack, client, kind, 5000 + n)
                time.sleep(settle_s)
                requests.enabled = logged.enabled = False
                counted, invoked, took = requests.take(), invocations.take(), logged.take()
                if n == 0:  # cold: function imports, authorizer cache miss
                    first[kind] = {"requests": group(counted), "invocations": dict(invoked), "status": status}
                    continue
                totals[kind] += counted
                calls[kind] += invoked
                records[kind] += took
                statuses[kind][status] += 1
        # Concurrent: the gateway's receives take up to 10 messages a request.
        requests.take()
        invocations.take()
        requests.enabled = True
        level = run_stack_level(stack, Hops(), concurrency, 60.0, per_worker, [90_000])
        time.sleep(settle_s)
        requests.enabled = False
        concurrent, concurrent_calls = requests.take(), invocations.take()
        concurrent_requests = level["latency"]["n"] + level["cancel"]["n"]

    report.extra["first_round_cold"] = first
    per_record = log_requests_per_record()
    for kind in ("reserve", "cancel"):
        ops: Counter[tuple[str, str]] = Counter()
        idle_count = 0
        free: Counter[str] = Counter()
        for (who, service, op), count in totals[kind].items():
            if idle(op):
                idle_count += count
                continue
            if who.startswith(STREAM_POLLER):
                free[op] += count
                continue
            ops[(service, op)] += count
            report.add(
                per=kind,
                caller=who,
                service=service,
                operation=op,
                per_request=round(count / rounds, 2),
                scan="SCAN!" if op.startswith("Scan") else "",
            )
        log_share = records[kind] / rounds * per_record
        ops[("DynamoDB", "BatchWriteItem [message log]")] += log_share * rounds
        report.add(
            per=kind,
            caller="gateway",
            service="DynamoDB",
            operation=f"BatchWriteItem (ocpp messages) [message log: {records[kind] / rounds:g} records' share]",
            per_request=round(log_share, 3),
            scan="",
        )
        if free:
            report.notes.append(
                f"{kind}: the DynamoDB Streams poller's {dict(free)} in the windows (Lambda's trigger: not billed,"
                " excluded)"
            )
        for function, count in sorted(calls[kind].items()):
            report.add(
                per=kind,
                caller="local API",
                service="Lambda",
                operation=f"Invoke {function}",
                per_request=round(count / rounds, 2),
            )
        dynamo = sum(c for (s, _), c in ops.items() if s == "DynamoDB") / rounds
        sqs = sum(c for (s, _), c in ops.items() if s == "SQS") / rounds
        lam = sum(calls[kind].values()) / rounds
        report.ratios[f"{kind}: DynamoDB requests"] = round(dynamo, 2)
        report.ratios[f"{kind}: DynamoDB requests, command path only (no [...])"] = round(
            sum(c for (s, op), c in ops.items() if s == "DynamoDB" and "[" not in op) / rounds, 2
        )
        report.ratios[f"{kind}: SQS requests"] = round(sqs, 2)
        report.ratios[f"{kind}: Lambda invocations"] = round(lam, 2)
        report.ratios[f"{kind}: answers"] = dict(statuses[kind])
        if idle_count:
            report.notes.append(
                f"{kind}: {idle_count} empty long polls / storage probes / lease renewals by the gateway in the"
                " windows (idle cost, excluded)"
            )
        if kind == "reserve":
            report.target("DynamoDB requests per reservation (warm)", round(dynamo, 2), 6, at_least=False)
            report.target("SQS requests per reservation, one at a time", round(sqs, 2), 2, at_least=False)
            scans = sum(c for (_, op), c in ops.items() if op.startswith("Scan"))
            report.target("Scans per reservation", scans / rounds, 0, at_least=False)
    if concurrent_requests:
        ops_c: Counter[str] = Counter()
        for (who, service, op), count in sorted(concurrent.items()):
            if idle(op) or who.startswith(STREAM_POLLER):
                continue
            ops_c[service] += count
            report.add(
                per=f"request at {concurrency} concurrent",
                caller=who,
                service=service,
                operation=op,
                per_request=round(count / concurrent_requests, 2),
                scan="SCAN!" if op.startswith("Scan") else "",
            )
        for service in ("DynamoDB", "SQS"):
            report.ratios[f"{concurrency} concurrent: {service} per request"] = round(
                ops_c[service] / concurrent_requests, 2
            )
        report.target(
            f"SQS requests per request at {concurrency} concurrent",
            round(ops_c["SQS"] / concurrent_requests, 2),
            2,
            at_least=False,
        )
        report.ratios[f"{concurrency} concurrent: Lambda per request"] = round(
            sum(concurrent_calls.values()) / concurrent_requests, 2
        )
        report.ratios[f"{concurrency} concurrent: requests (reserve + cancel)"] = concurrent_requests
        if level["error_count"]:
            report.notes.append(f"concurrent phase: {level['error_count']} errors, e.g. {level['errors']}"[:600])
    report.notes.append(
        "[events' webhooks]: the publisher reading the account's webhooks (strongly consistent, once per account "
        "and stream batch) for the reservation event; [message log]: the records' share of the log's batched writes"
    )
    report.notes.append(
        "[charger's StatusNotification]: the gateway storing the StatusNotification (Reserved / Available) the "
        "charger sends after accepting; caused by the reservation, but a charger's report, not the command path"
    )
    report.notes.append(
        f"{rounds} warm rounds (reserve, then cancel, sequential, one charger); counts are per request, "
        "including the function's polling of the command record (GetItem), which depends on how fast the "
        "charger answers."
    )
    report.notes.append(
        "warm: the function instance remembers the connected charger and which charger a port is on, so a "
        "reservation reads no registry item (the command's transaction checks the charger unchanged); an "
        "instance's first request for a charger reads it, and its first for a port also the port pointer "
        "(+2 GetItem, see first_round_cold)"
    )
    report.notes.append(
        "an authorizer cache miss (first request of a key, then every ReauthorizeEvery s) adds what "
        "first_round_cold shows"
    )
    report.emit(["per", "caller", "service", "operation", "per_request", "scan"])


if __name__ == "__main__":
    os.chdir(REPO_ROOT)
    main()
