"""The functions' Powertools ``Tracer``, and the stand-in used where tracing is off.

Powertools imports the X-Ray SDK for every ``Tracer``, disabled or not, and outside
Lambda the SDK's import builds two botocore X-Ray clients for centralized sampling
(~150 ms here). Where tracing is off (the local stack, tests, benchmarks) the tracer
gets a provider that records nothing, so the SDK is never imported. In Lambda,
with active tracing, the SDK patches ``http.client`` only: every call out of a
function goes through it (evreserve.awsjson's requests to DynamoDB, SQS and
EventBridge, botocore's under ``AWS_CLIENT=botocore``, webhook deliveries), each
recorded as a remote call to its host. Powertools' default (``patch_all``) would
import every other library the SDK can instrument that happens to be installed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

#: The libraries the X-Ray SDK instruments in Lambda.
PATCHED = ("httplib",)


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
    return Tracer(patch_modules=PATCHED)
