"""The AWS clients side by side: evreserve.awsjson against botocore, per call.

    .venv/bin/python benchmarks/aws_clients.py [--smoke] [--calls 300] [--rounds 3]

Both clients are built as the service builds them (``evreserve.aws``, ``AWS_CLIENT``
set to each) and call the same local stand-ins (DynamoDB Local, the SQS server,
EventBridge), the calls of a reservation: the charger's GetItem, the command's
TransactWriteItems, a Query, an UpdateItem, SendMessage, ReceiveMessage and PutEvents.
Rounds alternate the two clients operation by operation, so a burst of outside load
hits both. ``cpu_us`` is the calling thread's CPU per call (``time.thread_time``: the
client's own work, serialising, signing, sending, parsing; the servers are other
processes), ``wall_p50_us`` its latency, which includes the stand-in's time. The figure
that carries over to AWS is the CPU: there a function or the gateway pays it per call
whatever the service's latency.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from common import LOG_DIR, Report, ratio

from devstack.localaws import LocalAws
from evreserve.aws import dynamodb_client, events_client, sqs_client
from evreserve.settings import AwsSettings

KINDS = ("awsjson", "botocore")


def operations(aws: LocalAws, kind: str) -> dict[str, Callable[[], Any]]:
    settings = AwsSettings(aws_client=kind)  # type: ignore[call-arg]
    ddb, sqs, events = dynamodb_client(settings), sqs_client(settings), events_client(settings)
    table = aws.resources["REGISTRY_TABLE"]
    queue = sqs.create_queue(QueueName=f"bench-{kind}-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    bus = aws.resources["EVENT_BUS_NAME"]
    key = {"pk": {"S": f"bench#{kind}"}, "sk": {"S": "charger"}}
    item = {
        **key,
        "state": {"S": "Connected"},
        "instance": {"S": "gw-1"},
        "ports": {"M": {str(p): {"M": {"status": {"S": "Available"}, "n": {"N": str(p)}}} for p in range(1, 5)}},
    }
    ddb.put_item(TableName=table, Item=item)
    counter = iter(range(10**9))

    def transact() -> Any:
        n = next(counter)
        return ddb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": {**item, "sk": {"S": f"cmd#{n}"}}}},
                {
                    "Update": {
                        "TableName": table,
                        "Key": key,
                        "UpdateExpression": "SET #c = :c",
                        "ExpressionAttributeNames": {"#c": "count"},
                        "ExpressionAttributeValues": {":c": {"N": str(n)}},
                    }
                },
            ]
        )

    def receive() -> Any:
        sqs.send_message(QueueUrl=queue, MessageBody="x" * 400)
        return sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1, WaitTimeSeconds=0)

    return {
        "GetItem": lambda: ddb.get_item(TableName=table, Key=key, ConsistentRead=True),
        "TransactWriteItems": transact,
        "Query": lambda: ddb.query(
            TableName=table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": key["pk"]}, Limit=5
        ),
        "UpdateItem": lambda: ddb.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={":s": {"S": "Connected"}},
        ),
        "SendMessage": lambda: sqs.send_message(QueueUrl=queue, MessageBody="x" * 400),
        "SendMessage+ReceiveMessage": receive,
        "PutEvents": lambda: events.put_events(
            Entries=[
                {
                    "EventBusName": bus,
                    "Source": "evreserve.bench",
                    "DetailType": "Reservation Status Changed",
                    "Detail": json.dumps({"reservationId": 1, "status": "Reserved"}),
                    "Time": dt.datetime.now(dt.UTC),
                }
            ]
        ),
    }


def measure(call: Callable[[], Any], calls: int) -> tuple[float, list[float]]:
    walls = []
    cpu0 = time.thread_time()
    for _ in range(calls):
        w0 = time.perf_counter()
        call()
        walls.append(time.perf_counter() - w0)
    return (time.thread_time() - cpu0) / calls, walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few calls, to check the script runs")
    parser.add_argument("--calls", type=int, default=300, help="calls per operation, client and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    calls, rounds = (5, 1) if args.smoke else (args.calls, args.rounds)
    report = Report("aws_clients", smoke=args.smoke)
    with LocalAws(prefix=f"bc{os.getpid()}", log_dir=LOG_DIR / "aws_clients") as aws:
        os.environ.update(aws.env())
        ops = {kind: operations(aws, kind) for kind in KINDS}
        cpu: dict[tuple[str, str], list[float]] = {}
        wall: dict[tuple[str, str], list[float]] = {}
        for name in ops[KINDS[0]]:
            for kind in KINDS:  # warm-up: connections opened, botocore's lazy loads done
                measure(ops[kind][name], 3)
        for _ in range(rounds):
            for name in ops[KINDS[0]]:
                for kind in KINDS:
                    per_call, walls = measure(ops[kind][name], calls)
                    cpu.setdefault((name, kind), []).append(per_call)
                    wall.setdefault((name, kind), []).extend(walls)
        for name in ops[KINDS[0]]:
            row: dict[str, Any] = {"operation": name}
            for kind in KINDS:
                row[f"{kind}_cpu_us"] = round(statistics.median(cpu[(name, kind)]) * 1e6)
                row[f"{kind}_wall_p50_us"] = round(statistics.median(wall[(name, kind)]) * 1e6)
            row["cpu_botocore_over_awsjson"] = ratio(row["botocore_cpu_us"], row["awsjson_cpu_us"])
            report.add(**row)
    total = {kind: sum(r[f"{kind}_cpu_us"] for r in report.results) for kind in KINDS}
    report.ratios["CPU, all operations: botocore / awsjson"] = ratio(total["botocore"], total["awsjson"])
    report.notes.append(
        f"{calls} calls per operation, client and round, {rounds} rounds alternating the clients; cpu_us = median "
        "over rounds of the calling thread's CPU per call; wall = p50 over all calls (includes the stand-in)"
    )
    report.emit()


if __name__ == "__main__":
    main()
