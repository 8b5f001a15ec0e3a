"""Measure the SQS-compatible servers the local stack could run.

Each candidate runs as a subprocess on 127.0.0.1 (as the devstack runs it) and is
driven with boto3, the client the Lambdas use. The figures that matter for a
reservation round trip are the long-poll wake-up (a gateway blocked in ReceiveMessage
must see a command at once) and the cost of one send + receive + delete, with and
without a backlog. Prints a table, then the same figures as JSON.

    .venv/bin/python benchmarks/sqs_candidates.py [--cycles 300] [--json-only]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

HOST = "127.0.0.1"
PYTHON = sys.executable


@dataclass(frozen=True)
class Candidate:
    name: str
    argv: Callable[[int], list[str]]
    env: Callable[[int], dict[str, str]]


CANDIDATES = [
    Candidate(
        "moto",
        lambda port: [PYTHON, "-m", "moto.server", "-H", HOST, "-p", str(port)],
        lambda port: {},
    ),
    # What the devstack runs: moto's application behind devstack's own launcher.
    Candidate(
        "devstack",
        lambda port: [PYTHON, "-m", "devstack.sqs", "--port", str(port)],
        lambda port: {},
    ),
    Candidate(
        "ministack",
        lambda port: [PYTHON, "-m", "ministack"],
        lambda port: {"BIND_HOST": HOST, "GATEWAY_PORT": str(port), "SERVICES": "sqs", "LOG_LEVEL": "WARNING"},
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def client(endpoint: str) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",  # noqa: S106 (any value works locally)
        config=Config(retries={"max_attempts": 1}, read_timeout=30, max_pool_connections=20),
    )


def start(candidate: Candidate, log: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    port = free_port()
    endpoint = f"http://{HOST}:{port}"
    t0 = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            candidate.argv(port),
            env={**os.environ, **candidate.env(port)},
            stdin=subprocess.PIPE,  # the devstack server exits when its stdin closes
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    sqs = client(endpoint)
    while True:
        try:
            sqs.list_queues()
            return proc, endpoint, time.perf_counter() - t0
        except Exception:
            if proc.poll() is not None or time.perf_counter() - t0 > 30:
                proc.kill()
                raise RuntimeError(f"{candidate.name} did not start; see {log}") from None
            time.sleep(0.02)


def cycles_per_second(sqs: Any, url: str, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=0)
        sqs.delete_message(QueueUrl=url, ReceiptHandle=got["Messages"][0]["ReceiptHandle"])
    return n / (time.perf_counter() - t0)


def fill(sqs: Any, url: str, count: int) -> float:
    """Queue ``count`` messages with single sends; returns sends/s."""
    t0 = time.perf_counter()
    for i in range(count):
        sqs.send_message(QueueUrl=url, MessageBody=f"backlog{i}")
    return count / (time.perf_counter() - t0)


def wake_up_ms(endpoint: str, url: str, rounds: int) -> list[float]:
    sqs_send, sqs_recv = client(endpoint), client(endpoint)
    samples = []
    for _ in range(rounds):
        done = threading.Event()
        returned_at: list[float] = []

        def receive(done: threading.Event = done, returned_at: list[float] = returned_at) -> None:
            got = sqs_recv.receive_message(QueueUrl=url, WaitTimeSeconds=20)
            returned_at.append(time.perf_counter())
            done.set()
            for m in got.get("Messages", []):
                sqs_recv.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

        t = threading.Thread(target=receive)
        t.start()
        # Let the receiver block inside the long poll; the jitter keeps a server that
        # polls on a timer from being measured always at the same phase.
        time.sleep(0.2 + random.random() / 10)
        sent_at = time.perf_counter()
        sqs_send.send_message(QueueUrl=url, MessageBody="wake")
        if not done.wait(25):
            raise RuntimeError("long poll never returned")
        t.join()
        samples.append((returned_at[0] - sent_at) * 1000)
    return samples


def concurrent_cycles(endpoint: str, url: str, threads: int, seconds: float) -> float:
    counts = [0] * threads
    stop_at = time.perf_counter() + seconds

    def worker(idx: int) -> None:
        sqs = client(endpoint)
        while time.perf_counter() < stop_at:
            sqs.send_message(QueueUrl=url, MessageBody="c")
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=1)
            for m in got.get("Messages", []):
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                counts[idx] += 1

    t0 = time.perf_counter()
    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - t0)


def redrive_works(sqs: Any) -> bool:
    dlq = sqs.create_queue(QueueName=f"dlq-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    src = sqs.create_queue(
        QueueName=f"src-{uuid.uuid4().hex[:8]}",
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})},
    )["QueueUrl"]
    sqs.send_message(QueueUrl=src, MessageBody="poison")
    for _ in range(4):  # two allowed receives, then the message must move
        sqs.receive_message(QueueUrl=src, VisibilityTimeout=0, WaitTimeSeconds=0)
    got = sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=2)
    return [m["Body"] for m in got.get("Messages", [])] == ["poison"]


def api_support(sqs: Any) -> dict[str, bool]:
    results: dict[str, bool] = {}
    name = f"api-{uuid.uuid4().hex[:8]}"

    def check(op: str, fn: Callable[[], bool]) -> None:
        try:
            results[op] = bool(fn())
        except Exception:
            results[op] = False

    check("CreateQueue", lambda: sqs.create_queue(QueueName=name)["QueueUrl"].endswith(name))
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    check("GetQueueUrl", lambda: sqs.get_queue_url(QueueName=name)["QueueUrl"] == url)
    check(
        "SendMessageBatch",
        lambda: (
            len(
                sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": str(i)} for i in range(3)])[
                    "Successful"
                ]
            )
            == 3
        ),
    )
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])

    def change_visibility() -> bool:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=received[0]["ReceiptHandle"], VisibilityTimeout=0)
        again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        received[0] = next(m for m in again if m["MessageId"] == received[0]["MessageId"])
        return True

    check("ChangeMessageVisibility", change_visibility)
    check(
        "DeleteMessageBatch",
        lambda: (
            len(
                sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(received)],
                )["Successful"]
            )
            == len(received)
            == 3
        ),
    )

    def delete_queue() -> bool:
        sqs.delete_queue(QueueUrl=url)
        return name not in json.dumps(sqs.list_queues().get("QueueUrls", []))

    check("DeleteQueue", delete_queue)
    return results


def measure(candidate: Candidate, cycles: int, logdir: Path) -> dict[str, Any]:
    proc, endpoint, started = start(candidate, logdir / f"{candidate.name}.log")
    try:
        sqs = client(endpoint)
        url = sqs.create_queue(QueueName="bench")["QueueUrl"]
        cycles_idle = cycles_per_second(sqs, url, cycles)
        sends_filling = fill(sqs, url, 1000)
        cycles_backlog = cycles_per_second(sqs, url, max(cycles // 3, 50))
        sqs.purge_queue(QueueUrl=url)
        wake = wake_up_ms(endpoint, sqs.create_queue(QueueName="wake")["QueueUrl"], 15)
        conc = concurrent_cycles(endpoint, sqs.create_queue(QueueName="conc")["QueueUrl"], 10, 4.0)
        return {
            "start_s": round(started, 2),
            "rss_mb": round(rss_mb(proc.pid), 1),
            "cycles_per_s_backlog_0": round(cycles_idle, 1),
            "sends_per_s_filling_to_1000": round(sends_filling, 1),
            "cycles_per_s_backlog_1000": round(cycles_backlog, 1),
            "long_poll_wake_ms_median": round(statistics.median(wake), 1),
            "long_poll_wake_ms_max": round(max(wake), 1),
            "cycles_per_s_10_threads": round(conc, 1),
            "redrive_to_dlq": redrive_works(sqs),
            "api": api_support(sqs),
        }
    finally:
        proc.terminate()
        proc.wait(10)


def print_table(results: dict[str, dict[str, Any]]) -> None:
    names = list(results)
    rows = [k for k in next(iter(results.values())) if k != "api"]
    api_ops = list(next(iter(results.values()))["api"])
    width = max(len(r) for r in rows + api_ops) + 2
    print("".ljust(width) + "".join(n.rjust(12) for n in names))
    for row in rows:
        print(row.ljust(width) + "".join(str(results[n][row]).rjust(12) for n in names))
    for op in api_ops:
        print(op.ljust(width) + "".join(str(results[n]["api"][op]).rjust(12) for n in names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--only", choices=[c.name for c in CANDIDATES])
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()
    logdir = Path(tempfile.mkdtemp(prefix="sqs-bench-"))
    results = {c.name: measure(c, args.cycles, logdir) for c in CANDIDATES if args.only in (None, c.name)}
    if not args.json_only:
        print_table(results)
        print()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
