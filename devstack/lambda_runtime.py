"""Lambda functions run in-process, one imported copy of the handler module per instance.

The local API (:mod:`devstack.local_api`) cannot start Lambda's containers (no Docker
here), so it emulates what matters to the code under test:

- **Instances.** Lambda runs each concurrent request in its own sandbox, and code is
  written for that: Powertools' resolvers keep the current event on module globals, so
  one module copy must never serve two requests at once. Here an instance is a copy of
  the handler module imported under a unique name (``importlib`` from the file), with
  its own globals; a :class:`FunctionPool` per function grows on demand up to a cap
  (Lambda's concurrency), reuses idle instances most-recently-used first (warm starts),
  and throws away an instance that timed out (Lambda resets that sandbox).
- **Timeouts.** The handler runs in a daemon thread; the caller stops waiting at the
  function's ``Timeout`` and reports it. Python cannot kill a thread, so the handler may
  run on in the background, which is why its instance is never reused.
- **Environment.** Functions read ``os.environ`` when they start (typed settings built at
  cold start), but a process has one environment. :class:`FunctionEnvironment` sets every
  variable whose value is the same for all functions once, at start; a variable that
  two functions declare with different values is set to the function's value around
  each of its cold starts, under one lock, and keeps whatever the last cold start set:
  correct for code that reads its settings at start-up (the project's rule), not for
  code that reads such a variable per request.

Modules other than the handler (the core layer, Powertools, siblings in the CodeUri) are
imported once and shared by all instances, as their caching is per process anyway; they
must be thread-safe (boto3 clients are; module-level request state is not). Powertools'
REST resolvers are not: ``resolve()`` stores the event on the class ``BaseRouter``
(``BaseRouter.current_event = ...``), which every copy of every handler shares, so two
requests at once would read each other's bodies and callers. Each invocation runs on a
thread of its own, so :func:`_per_thread_router_state` makes that state per thread.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Lambda's default concurrency quota per region; a pool never grows past it.
DEFAULT_MAX_INSTANCES = 200
#: Lambda gives a cold start's initialisation 10 s of its own, apart from the Timeout.
INIT_TIMEOUT_S = 10.0
ACCOUNT_ID = "123456789012"

#: Set by ``sam local`` too; Powertools' Tracer switches itself off when it sees it, so
#: the functions do not try to reach an X-Ray daemon.
EMULATOR_ENV: Mapping[str, str] = {"AWS_SAM_LOCAL": "true"}

Handler = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class FunctionSpec:
    """What the emulator needs of an ``AWS::Serverless::Function``."""

    logical_id: str
    code_uri: Path
    #: ``module.function`` (the module may be dotted, relative to ``code_uri``).
    handler: str
    timeout_s: float = 3.0
    memory_mb: int = 128
    environment: Mapping[str, str] = field(default_factory=dict)

    @property
    def module_name(self) -> str:
        return self.handler.rpartition(".")[0]

    @property
    def function_name(self) -> str:
        return self.handler.rpartition(".")[2]

    @property
    def module_file(self) -> Path:
        return self.code_uri.joinpath(*self.module_name.split(".")).with_suffix(".py")


class _PerThread:
    """A class attribute whose value belongs to the thread that set it."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._local = threading.local()

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        try:
            return self._local.value
        except AttributeError:
            raise AttributeError(self._name) from None

    def __set__(self, obj: object, value: Any) -> None:
        self._local.value = value


_ROUTER_STATE = ("current_event", "lambda_context")
_router_lock = threading.Lock()


def _per_thread_router_state() -> None:
    """Make Powertools' ``BaseRouter.current_event`` / ``lambda_context`` per thread (once).

    They are assigned on the class itself, which a descriptor alone cannot intercept, so the
    class also gets a metaclass (a subclass of its own) that routes those assignments to
    the descriptors. A no-op when Powertools' event handler is not loaded.
    """
    module = sys.modules.get("aws_lambda_powertools.event_handler.api_gateway")
    router: Any = getattr(module, "BaseRouter", None)
    if router is None:
        return
    with _router_lock:
        if isinstance(router.__dict__.get(_ROUTER_STATE[0]), _PerThread):
            return
        base_meta: Any = type(router)

        def set_attribute(cls: type, name: str, value: Any) -> None:
            slot = cls.__dict__.get(name)
            if isinstance(slot, _PerThread):
                slot.__set__(None, value)
            else:
                base_meta.__setattr__(cls, name, value)

        for name in _ROUTER_STATE:
            base_meta.__setattr__(router, name, _PerThread(name))
        router.__class__ = type("PerThreadRouterMeta", (base_meta,), {"__setattr__": set_attribute})


class LambdaContext:
    """The context object of Lambda's Python runtime, attribute for attribute."""

    def __init__(self, spec: FunctionSpec, region: str, deadline: float) -> None:
        self.function_name = spec.logical_id
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{spec.logical_id}"
        self.memory_limit_in_mb = spec.memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec.logical_id}"
        self.log_stream_name = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        self.identity: Any = None
        self.client_context: Any = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass(frozen=True)
class Invocation:
    """The outcome of one invoke: a JSON-shaped ``result`` or why there is none."""

    result: Any = None
    #: The exception the handler (or its module's import) raised, Lambda's "Unhandled".
    error: BaseException | None = None
    timed_out: bool = False
    #: The pool was at its cap: Lambda would answer TooManyRequestsException.
    throttled: bool = False
    cold: bool = False
    duration_ms: float = 0.0
    #: CPU the handler's own thread used (time.thread_time): the function's work, without
    #: the emulator's JSON round trip of the event and result.
    cpu_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out and not self.throttled


class FunctionEnvironment:
    """Puts the functions' environment variables into the one ``os.environ``.

    See the module docstring for the rule; :meth:`apply` and :meth:`restore` bracket a
    run so tests leave the process as they found it.
    """

    def __init__(self, specs: Mapping[str, FunctionSpec], extra: Mapping[str, str] | None = None) -> None:
        values: dict[str, set[str]] = {}
        for spec in specs.values():
            for name, value in spec.environment.items():
                values.setdefault(name, set()).add(value)
        self.conflicting = frozenset(name for name, seen in values.items() if len(seen) > 1)
        self.shared: dict[str, str] = {name: next(iter(seen)) for name, seen in values.items() if len(seen) == 1}
        self.shared.update(EMULATOR_ENV)
        self.shared.update(extra or {})
        self._saved: dict[str, str | None] = {}
        # One lock for all cold starts that set a conflicting variable: two of them at
        # once would each see the other's value.
        self._lock = threading.Lock()

    def apply(self) -> None:
        if self.conflicting:
            log.warning(
                "functions declare different values for %s: each is set for its function's cold starts only",
                ", ".join(sorted(self.conflicting)),
            )
        for name, value in self.shared.items():
            self._remember(name)
            os.environ[name] = value

    def restore(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()

    @contextmanager
    def cold_start(self, spec: FunctionSpec) -> Iterator[None]:
        own = {name: value for name, value in spec.environment.items() if name in self.conflicting}
        if not own:
            yield
            return
        with self._lock:
            for name, value in own.items():
                self._remember(name)
                os.environ[name] = value
            yield

    def _remember(self, name: str) -> None:
        if name not in self._saved:
            self._saved[name] = os.environ.get(name)


class CpuTally:
    """CPU milliseconds each function's warm invocations used, since the last ``take()`` (benchmarks read it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ms: dict[str, float] = {}

    def add(self, function_id: str, cpu_ms: float) -> None:
        with self._lock:
            self._ms[function_id] = self._ms.get(function_id, 0.0) + cpu_ms

    def take(self) -> dict[str, float]:
        with self._lock:
            taken, self._ms = self._ms, {}
        return taken


FUNCTION_CPU = CpuTally()


class FunctionInstance:
    """One sandbox: a private copy of the handler module, used by one request at a time."""

    _serial = itertools.count(1)

    def __init__(self, spec: FunctionSpec, environment: FunctionEnvironment, region: str) -> None:
        self.spec = spec
        self.region = region
        self.number = next(self._serial)
        # Unique per instance, and a valid identifier so tracebacks and pydantic's
        # forward-reference lookups through sys.modules work.
        self.module_name = f"_lambda_{spec.logical_id}_{self.number}_{spec.module_name.replace('.', '_')}"
        self._environment = environment
        self._handler: Handler | None = None
        #: False once a timeout left a thread running inside this copy.
        self.reusable = True

    @property
    def cold(self) -> bool:
        return self._handler is None

    def _load(self) -> Handler:
        path = self.spec.module_file
        spec = importlib.util.spec_from_file_location(self.module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {self.spec.handler!r}: no module at {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[self.module_name] = module
        try:
            with self._environment.cold_start(self.spec):
                spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(self.module_name, None)
            raise
        _per_thread_router_state()
        handler = getattr(module, self.spec.function_name, None)
        if not callable(handler):
            raise AttributeError(f"handler {self.spec.handler!r}: {path} has no function {self.spec.function_name!r}")
        return handler  # type: ignore[no-any-return]

    def invoke(self, event: Any, timeout_s: float | None = None) -> Invocation:
        """Run the handler on ``event``; wait at most the function's Timeout (or ``timeout_s``)."""
        started = time.monotonic()
        cold = self.cold
        limit = self.spec.timeout_s if timeout_s is None else min(timeout_s, self.spec.timeout_s)
        done = threading.Event()
        initialised = threading.Event()
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                if self._handler is None:
                    self._handler = self._load()
                initialised.set()
                context = LambdaContext(self.spec, self.region, time.monotonic() + limit)
                # Lambda hands the handler a freshly decoded event and encodes what it
                # returns: a result JSON cannot carry is an error there, so it is here.
                decoded = json.loads(json.dumps(event))
                cpu_started = time.thread_time()
                try:
                    result = self._handler(decoded, context)
                finally:
                    outcome["cpu_ms"] = (time.thread_time() - cpu_started) * 1000
                outcome["result"] = json.loads(json.dumps(result))
            except BaseException as exc:  # the handler's failure is the invoke's result
                outcome["error"] = exc
            finally:
                initialised.set()
                done.set()

        threading.Thread(target=run, name=f"lambda-{self.spec.logical_id}-{self.number}", daemon=True).start()
        finished = True
        if (cold and not initialised.wait(INIT_TIMEOUT_S)) or not done.wait(limit):
            finished = False
        duration_ms = (time.monotonic() - started) * 1000
        if not finished:
            self.reusable = False
            return Invocation(timed_out=True, cold=cold, duration_ms=duration_ms)
        cpu_ms = float(outcome.get("cpu_ms", 0.0))
        if not cold:  # a cold start's import is not what a request costs
            FUNCTION_CPU.add(self.spec.logical_id, cpu_ms)
        return Invocation(
            result=outcome.get("result"), error=outcome.get("error"), cold=cold, duration_ms=duration_ms, cpu_ms=cpu_ms
        )

    def unload(self) -> None:
        sys.modules.pop(self.module_name, None)


class FunctionPool:
    """A function's instances: grows on demand up to ``max_instances``, reuses idle ones."""

    def __init__(
        self,
        spec: FunctionSpec,
        environment: FunctionEnvironment,
        *,
        region: str = "us-east-1",
        max_instances: int = DEFAULT_MAX_INSTANCES,
    ) -> None:
        self.spec = spec
        self.max_instances = max_instances
        self._environment = environment
        self._region = region
        self._idle: list[FunctionInstance] = []
        self._busy = 0
        self._lock = threading.Lock()
        self.cold_starts = 0
        self.peak_instances = 0

    @property
    def instances(self) -> int:
        """Instances alive now, idle or busy (those lost to a timeout excluded)."""
        with self._lock:
            return len(self._idle) + self._busy

    def invoke(self, event: Any, timeout_s: float | None = None) -> Invocation:
        instance = self._acquire()
        if instance is None:
            return Invocation(throttled=True)
        try:
            return instance.invoke(event, timeout_s)
        finally:
            self._release(instance)

    def _acquire(self) -> FunctionInstance | None:
        with self._lock:
            if self._idle:
                self._busy += 1
                return self._idle.pop()  # the most recently used: the warmest
            if len(self._idle) + self._busy >= self.max_instances:
                return None
            self._busy += 1
            self.cold_starts += 1
            self.peak_instances = max(self.peak_instances, self._busy + len(self._idle))
        return FunctionInstance(self.spec, self._environment, self._region)

    def _release(self, instance: FunctionInstance) -> None:
        with self._lock:
            self._busy -= 1
            # An instance whose module failed to import stays cold and retries the
            # import next time, as Lambda retries the init of a failed sandbox.
            if instance.reusable:
                self._idle.append(instance)
                return
        # Its concurrency slot is free again, as when Lambda resets a timed-out sandbox;
        # the stray thread keeps the module object alive as long as it needs it.
        instance.unload()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for instance in idle:
            instance.unload()


def add_code_uri_to_path(code_uri: Path) -> None:
    """Make modules beside a handler importable, as ``/var/task`` is on Lambda's path.

    Appended, not prepended: several functions' directories share one ``sys.path`` here,
    and none of them may shadow an installed package.
    """
    entry = str(code_uri)
    if entry not in sys.path:
        sys.path.append(entry)
