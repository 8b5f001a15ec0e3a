"""Lambda's DynamoDB event source, locally: a table's stream read in order and handed to a function.

What ``template.yaml`` declares on a function as ``Type: DynamoDB`` runs here as Lambda's
poller would: records in stream order, at most ``BatchSize`` at a time, the function's
``batchItemFailures`` answered by re-reading from the first failed record, retries with a
backoff up to ``MaximumRetryAttempts`` (capped locally, so that a broken function does not
hold the stream for hours), then the batch's description sent to the ``OnFailure``
destination queue and the batch skipped. DynamoDB Local serves the stream API at its own
endpoint.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

from devstack import client_config

log = logging.getLogger("devstack.streams")

#: Retries of one batch before it goes to the failure destination, whatever the template says.
LOCAL_MAX_ATTEMPTS = 5
POLL_S = 0.2
SHARDS_EVERY_S = 5.0
_REOPEN = frozenset({"TrimmedDataAccessException", "ExpiredIteratorException"})


@dataclass(frozen=True)
class StreamSource:
    """One ``Type: DynamoDB`` event of a function, as template.yaml declares it."""

    function_id: str
    table_id: str
    batch_size: int = 100
    max_attempts: int = LOCAL_MAX_ATTEMPTS
    starting_position: str = "TRIM_HORIZON"
    failure_queue_id: str | None = None


def stream_source(
    function_id: str, props: dict[str, Any], as_getatt: Callable[[Any], tuple[str, str] | None]
) -> StreamSource | None:
    """The source of a ``Type: DynamoDB`` event's properties; None when its stream is no table's."""
    stream = as_getatt(props.get("Stream"))
    if stream is None or stream[1] != "StreamArn":
        return None
    failure = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
    failure_target = as_getatt(failure)
    retries = props.get("MaximumRetryAttempts")
    return StreamSource(
        function_id=function_id,
        table_id=stream[0],
        batch_size=int(props.get("BatchSize", 100)),
        # -1 is Lambda's "until the record expires": locally, the cap.
        max_attempts=min(LOCAL_MAX_ATTEMPTS, int(retries) + 1)
        if retries is not None and int(retries) >= 0
        else LOCAL_MAX_ATTEMPTS,
        starting_position=str(props.get("StartingPosition", "TRIM_HORIZON")),
        failure_queue_id=failure_target[0] if failure_target else None,
    )


def _as_lambda_gives_it(record: dict[str, Any], arn: str) -> dict[str, Any]:
    """A GetRecords record as Lambda passes it: JSON only (boto3 parsed the time), with the stream's ARN."""
    change = dict(record["dynamodb"])
    created = change.get("ApproximateCreationDateTime")
    if created is not None and hasattr(created, "timestamp"):
        change["ApproximateCreationDateTime"] = float(int(created.timestamp()))
    return {**record, "dynamodb": change, "eventSourceARN": arn}


class StreamPoller:
    """Reads one table's stream and invokes ``invoke(event) -> result`` with its records, on a thread."""

    def __init__(
        self,
        source: StreamSource,
        table: str,
        invoke: Callable[[dict[str, Any]], Any],
        *,
        failure_queue_url: str | None = None,
    ) -> None:
        self.source = source
        self.table = table
        self._invoke = invoke
        self._failure_queue_url = failure_queue_url
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Records handed to the function and acknowledged (tests read it).
        self.delivered = 0
        #: The last record handed on, per shard: where a reopened shard resumes.
        self._last: dict[str, str] = {}
        endpoint = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
        self._dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, config=client_config())
        self._streams = boto3.client("dynamodbstreams", endpoint_url=endpoint, config=client_config())
        self._sqs = boto3.client("sqs", config=client_config()) if failure_queue_url else None

    def start(self) -> StreamPoller:
        self._thread = threading.Thread(target=self._run, name=f"stream-{self.source.function_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _iterator(self, arn: str, shard_id: str) -> str:
        """Where to read a shard from: after the last record delivered, else the source's start."""
        last = self._last.get(shard_id)
        if last is not None:
            where: dict[str, str] = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": last}
        else:
            where = {"ShardIteratorType": self.source.starting_position}
        return str(self._streams.get_shard_iterator(StreamArn=arn, ShardId=shard_id, **where)["ShardIterator"])

    def _run(self) -> None:
        iterators: dict[str, str | None] = {}
        arn = ""
        next_shards = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_shards:
                    arn = self._dynamodb.describe_table(TableName=self.table)["Table"]["LatestStreamArn"]
                    for shard in self._streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
                        parent = shard.get("ParentShardId")
                        if parent in iterators and iterators[parent] is not None:
                            continue  # a child is read once its parent is read to its end, as Lambda does
                        if shard["ShardId"] not in iterators:
                            iterators[shard["ShardId"]] = self._iterator(arn, shard["ShardId"])
                    next_shards = time.monotonic() + SHARDS_EVERY_S
                busy = False
                for shard_id, iterator in list(iterators.items()):
                    if iterator is None:
                        continue  # closed shard, read to its end
                    try:
                        page = self._streams.get_records(ShardIterator=iterator, Limit=self.source.batch_size)
                    except ClientError as exc:
                        if exc.response.get("Error", {}).get("Code") not in _REOPEN:
                            raise
                        # DynamoDB Local answers TrimmedDataAccess to a TRIM_HORIZON iterator of a
                        # shard with no record yet, and iterators expire: open the shard again.
                        del iterators[shard_id]
                        next_shards = 0.0
                        continue
                    records = page.get("Records", [])
                    if records:
                        busy = True
                        iterator = self._deliver(arn, shard_id, records, page.get("NextShardIterator"))
                        self._last[shard_id] = str(records[-1]["dynamodb"]["SequenceNumber"])
                    else:
                        iterator = page.get("NextShardIterator")
                    iterators[shard_id] = iterator
                if not busy:
                    self._stop.wait(POLL_S)
            except Exception:
                log.exception("reading the stream of %s failed; retrying", self.table)
                self._stop.wait(1.0)

    def _deliver(self, arn: str, shard_id: str, records: list[dict[str, Any]], after: str | None) -> str | None:
        """Hand ``records`` to the function until it takes them all; the iterator to read on from."""
        batch = [_as_lambda_gives_it(record, arn) for record in records]
        for attempt in range(1, self.source.max_attempts + 1):
            failed = self._failed_from(batch)
            if failed is None:
                self.delivered += len(batch)
                return after
            done = [r for r in batch if int(r["dynamodb"]["SequenceNumber"]) < int(failed)]
            self.delivered += len(done)
            batch = batch[len(done) :]
            log.warning("%s failed from record %s (attempt %d)", self.source.function_id, failed, attempt)
            self._stop.wait(min(5.0, 0.2 * 2**attempt))
            if self._stop.is_set():
                return after  # stopping is not the function failing: nothing to give up on
        self._give_up(arn, shard_id, batch)
        return after

    def _failed_from(self, batch: list[dict[str, Any]]) -> str | None:
        """The sequence number to retry from, or None when the function took the whole batch."""
        try:
            result = self._invoke({"Records": batch})
        except Exception:
            log.exception("%s raised", self.source.function_id)
            return str(batch[0]["dynamodb"]["SequenceNumber"])
        failures = (result or {}).get("batchItemFailures") or [] if isinstance(result, dict) else []
        if not failures:
            return None
        return str(min(int(f["itemIdentifier"]) for f in failures))

    def _give_up(self, arn: str, shard_id: str, batch: list[dict[str, Any]]) -> None:
        first, last = batch[0]["dynamodb"]["SequenceNumber"], batch[-1]["dynamodb"]["SequenceNumber"]
        log.error("%s: gave up on records %s..%s of %s", self.source.function_id, first, last, self.table)
        if self._sqs is not None and self._failure_queue_url is not None:
            # The shape Lambda sends to an OnFailure destination for a stream source.
            description = {
                "requestContext": {"condition": "RetryAttemptsExhausted", "functionArn": self.source.function_id},
                "DDBStreamBatchInfo": {
                    "shardId": shard_id,
                    "startSequenceNumber": first,
                    "endSequenceNumber": last,
                    "batchSize": len(batch),
                    "streamArn": arn,
                },
            }
            self._sqs.send_message(QueueUrl=self._failure_queue_url, MessageBody=json.dumps(description))
