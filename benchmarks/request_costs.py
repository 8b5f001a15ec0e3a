"""AWS requests and Lambda invocations per reservation and per cancel, counted exactly.

    .venv/bin/python benchmarks/request_costs.py [--smoke] [--rounds 10]

The whole local stack runs in this process (``stack.FullStack``), so one wrapper around
botocore's ``Endpoint._send`` sees every HTTP request any piece makes to DynamoDB Local
or the SQS server (retries included: one count per attempt, as AWS bills), attributed
to the gateway or the functions by thread; another around the local API's
``FunctionPool.invoke`` counts invocations. Each round is one reservation (POST, answered
Accepted) then its cancel, sequential, with the counts taken after each request and
the gateway's trailing writes and its deletion, which lingers (``GATEWAY_DELETE_LINGER_S``)
for others to share the batch: alone in its window, each request pays its own. The
first round (cold functions, authorizer cache miss, port pointer not yet remembered)
is reported apart. Then reservations and cancels at 10 concurrent, where receives and
deletions share batches. A gateway long poll that returned nothing is idle cost, not
a reservation's, and is listed apart.
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
from reservation_roundtrip import ID_TAG, expiry, run_stack_level
from stack import FullStack, Hops, InvocationCounter, RequestCounter, group

#: The gateway deletes the message and logs after the answer went out.
SETTLE_S = 0.5
#: What the gateway does on a timer whether or not anyone reserves: not a reservation's cost.
IDLE = frozenset({"ReceiveMessage(empty)", "GetItem(probe)"})


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
    requests, invocations = RequestCounter(), InvocationCounter()
    requests.install()
    invocations.install()

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
        first: dict[str, Any] = {}
        # Each request's window lasts until the gateway's deletion, which lingers, has gone.
        linger_s = stack.gateway.settings.gateway_delete_linger_s
        settle_s = SETTLE_S + linger_s
        for n in range(rounds + 1):
            for kind in ("reserve", "cancel"):
                requests.take()
                invocations.take()
                requests.enabled = True
                status = one(stack, client, kind, 5000 + n)
                time.sleep(settle_s)
                requests.enabled = False
                counted, invoked = requests.take(), invocations.take()
                if n == 0:  # cold: function imports, authorizer cache miss
                    first[kind] = {"requests": group(counted), "invocations": dict(invoked), "status": status}
                    continue
                totals[kind] += counted
                calls[kind] += invoked
                statuses[kind][status] += 1
        # Concurrent: SQS receives and deletes are batched by the gateway (up to 10 a request).
        requests.take()
        invocations.take()
        requests.enabled = True
        level = run_stack_level(stack, Hops(), concurrency, 60.0, per_worker, [90_000])
        time.sleep(settle_s)
        requests.enabled = False
        concurrent, concurrent_calls = requests.take(), invocations.take()
        concurrent_requests = level["latency"]["n"] + level["cancel"]["n"]

    report.extra["first_round_cold"] = first
    for kind in ("reserve", "cancel"):
        ops: Counter[tuple[str, str]] = Counter()
        idle = 0
        for (who, service, op), count in totals[kind].items():
            if op in IDLE:
                idle += count
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
        report.ratios[f"{kind}: DynamoDB requests, command path only"] = round(
            sum(c for (s, op), c in ops.items() if s == "DynamoDB" and "[charger's" not in op) / rounds, 2
        )
        report.ratios[f"{kind}: SQS requests"] = round(sqs, 2)
        report.ratios[f"{kind}: Lambda invocations"] = round(lam, 2)
        report.ratios[f"{kind}: answers"] = dict(statuses[kind])
        if idle:
            report.notes.append(
                f"{kind}: {idle} empty long polls / storage probes by the gateway in the windows (idle cost, excluded)"
            )
        if kind == "reserve":
            report.target("DynamoDB requests per reservation (warm)", round(dynamo, 2), 6, at_least=False)
            report.target("SQS requests per reservation, one at a time", round(sqs, 2), 2, at_least=False)
            scans = sum(c for (_, op), c in ops.items() if op.startswith("Scan"))
            report.target("Scans per reservation", scans / rounds, 0, at_least=False)
    if concurrent_requests:
        ops_c: Counter[str] = Counter()
        for (who, service, op), count in sorted(concurrent.items()):
            if op in IDLE:
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
        "[charger's StatusNotification]: the gateway storing the StatusNotification (Reserved / Available) the "
        "charger sends after accepting; caused by the reservation, but a charger's report, not the command path"
    )
    report.notes.append(
        f"{rounds} warm rounds (reserve, then cancel, sequential, one charger); counts are per request, "
        "including the function's polling of the command record (GetItem), which depends on how fast the "
        "charger answers."
    )
    report.notes.append(
        "warm: the function instance remembers which charger a port is on, so a reservation reads the charger "
        "item only; an instance's first request for a port also reads the port pointer (+1 GetItem, see "
        "first_round_cold)"
    )
    report.notes.append(
        f"one at a time, every request's DeleteMessageBatch goes alone after the gateway's {linger_s:g} s linger "
        "(GATEWAY_DELETE_LINGER_S): a request with another command completing within the linger shares it, as "
        f"at {concurrency} concurrent"
    )
    report.notes.append(
        "an authorizer cache miss (first request of a key, then every ReauthorizeEvery s) adds what "
        "first_round_cold shows"
    )
    report.emit(["per", "caller", "service", "operation", "per_request", "scan"])


if __name__ == "__main__":
    os.chdir(REPO_ROOT)
    main()
