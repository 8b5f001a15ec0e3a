"""The functions' Powertools ``Tracer``, and the stand-in used where tracing is off.

Powertools imports the X-Ray SDK for every ``Tracer``, disabled or not, and outside
Lambda the SDK's import builds two botocore X-Ray clients for centralized sampling
(~150 ms here). Where tracing is off (the local stack, tests, benchmarks) the tracer
gets a provider that records nothing, so the SDK is never imported. In Lambda, with
active tracing, every AWS call of evreserve.awsjson gets a subsegment of its own, as
the SDK's botocore patch gave botocore's calls: named after the service, in the ``aws``
namespace, with the operation, the table or queue and the request id, so X-Ray's
service map shows DynamoDB, SQS and EventBridge as such (``record_aws_calls``). The SDK
patches no library then: awsjson sends through its own HTTP exchange, and the API
functions call out to nothing else (the ``http.client`` patch would cost ~40 ms of
import, urllib3's, for nothing). Under ``AWS_CLIENT=botocore`` it patches botocore, as
before awsjson. Powertools' default (``patch_all``) would import every other library
the SDK can instrument that happens to be installed.
"""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

from evreserve import awsjson
from evreserve.settings import AwsSettings


def patched_libraries() -> tuple[str, ...]:
    """What the X-Ray SDK instruments in Lambda: the AWS client's library if it is botocore."""
    return ("botocore",) if AwsSettings.from_environment().aws_client == "botocore" else ()


class _Unrecorded(BaseSegment):
    """A subsegment nobody records."""

    def close(self, end_time: int | None = None) -> None:
        pass

    def add_subsegment(self, subsegment: Any) -> None:
        pass

    def remove_subsegment(self, subsegment: Any) -> None:
        pass

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        pass


class NoTracing(BaseProvider):
    """The provider of a disabled tracer: Powertools still opens subsegments around
    each decorated call, so they must exist, but nothing is recorded or sent."""

    @contextmanager
    def in_subsegment(self, name: Any = None, **kwargs: Any) -> Iterator[BaseSegment]:
        yield _Unrecorded()

    @asynccontextmanager
    async def in_subsegment_async(self, name: Any = None, **kwargs: Any) -> AsyncIterator[BaseSegment]:
        yield _Unrecorded()

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def patch(self, modules: Sequence[str]) -> None:
        pass

    def patch_all(self) -> None:
        pass


def create_tracer() -> Tracer:
    """The tracer of a function, decided by the environment as Powertools decides."""
    # Powertools' own rule: off when POWERTOOLS_TRACE_DISABLED is set, or outside Lambda.
    if Tracer._is_tracer_disabled():
        return Tracer(disabled=True, provider=NoTracing())
    patched = patched_libraries()
    # auto_patch off when there is nothing to patch: Powertools takes no modules as "all".
    tracer = Tracer(patch_modules=patched, auto_patch=bool(patched))
    awsjson.observe(record_aws_calls)
    return tracer


#: X-Ray's names for the services, as its botocore patch names them.
_SERVICE_NAMES = {"dynamodb": "DynamoDB", "sqs": "SQS", "events": "EventBridge"}


def _ignore(answer: dict[str, Any]) -> None:
    pass


@contextmanager
def record_aws_calls(
    client: awsjson.JsonClient, operation: str, params: dict[str, Any]
) -> Iterator[Callable[[dict[str, Any]], None]]:
    """One X-Ray subsegment per AWS call, with what the SDK's botocore patch recorded."""
    from aws_xray_sdk.core import xray_recorder  # loaded already: tracing is on

    service = client.service.signing_name
    subsegment = xray_recorder.begin_subsegment(_SERVICE_NAMES.get(service, service), "aws")
    if subsegment is None:  # no segment to record into (outside an invocation)
        yield _ignore
        return
    aws: dict[str, Any] = {"operation": operation, "region": client.region}
    for parameter, key in (("TableName", "table_name"), ("QueueUrl", "queue_url")):
        if parameter in params:
            aws[key] = params[parameter]

    def answered(answer: dict[str, Any]) -> None:
        metadata = answer.get("ResponseMetadata", {})
        aws["request_id"] = metadata.get("RequestId")
        subsegment.put_http_meta("status", metadata.get("HTTPStatusCode"))

    try:
        yield answered
    except awsjson.ClientError as exc:
        # As the botocore patch: the status (4xx marks an error, 429 a throttle, 5xx a
        # fault) and the exception, remote.
        answered(exc.response)
        subsegment.add_exception(exc, traceback.extract_stack(), True)
        raise
    except Exception as exc:
        subsegment.add_exception(exc, traceback.extract_stack())
        raise
    finally:
        subsegment.set_aws(aws)
        xray_recorder.end_subsegment()
