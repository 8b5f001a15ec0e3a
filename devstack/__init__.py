"""The local AWS stack used by ``make run`` and the tests.

- :mod:`devstack.dynamodb`: :class:`~devstack.dynamodb.DynamoDBLocal`, AWS's DynamoDB Local.
- :mod:`devstack.sqs`: :class:`~devstack.sqs.SqsLocal`, moto's SQS in server mode.
- :mod:`devstack.template`: tables and queues as ``template.yaml`` declares them.
- :mod:`devstack.localaws`: :class:`~devstack.localaws.LocalAws`, both servers plus the
  template's resources and the environment that points boto3 at them.

This module holds what the two servers share: each runs as a child process bound to
127.0.0.1 (never a thread: the tests run other servers in the same process), logs to a
file, announces its port on a ``DEVSTACK_LISTENING host:port`` line, and exits by
itself when its stdin closes, so a parent that dies without cleaning up leaves nothing
behind.
"""

from __future__ import annotations

import abc
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

from botocore.config import Config

HOST = "127.0.0.1"
REGION = "us-east-1"
#: Fake credentials: the local servers accept any, but botocore refuses to sign without.
ACCESS_KEY_ID = "local"
SECRET_ACCESS_KEY = "local"  # noqa: S105 (not a secret: any value works locally)
REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO_ROOT / ".cache"

_LISTENING = re.compile(rb"DEVSTACK_LISTENING [0-9.]+:(\d+)")


def client_config(connect_timeout: float = 1.0, read_timeout: float = 5.0) -> Config:
    """A botocore config for the local servers: a dead server must fail a call at once.

    One attempt only, since botocore's retries would turn a refused connection into
    seconds of backoff; a long poll needs a ``read_timeout`` above its wait time.
    """
    return Config(
        region_name=REGION,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": 1},
    )


class ServerStartError(RuntimeError):
    """A local server exited, or did not answer, before it was ready."""


class LocalServer(abc.ABC):
    """A local AWS stand-in run as a child process; ``with`` starts and stops it.

    ``port=0`` lets the server pick a free port (no probe-then-bind race); once known,
    the port is kept, so :meth:`stop` then :meth:`start` brings the server back at the
    same endpoint, which is what fault-injection tests need.
    """

    #: Short name used in log file names and error messages.
    name: ClassVar[str]

    def __init__(self, port: int = 0, log_path: Path | None = None, start_timeout: float = 30.0) -> None:
        self.port = port
        self.start_timeout = start_timeout
        if log_path is None:
            log_dir = CACHE_DIR / "logs"
            log_dir.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f"{self.name}-", suffix=".log", dir=log_dir)
            os.close(fd)
            log_path = Path(name)
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        if not self.port:
            raise RuntimeError(f"{self.name} has no port yet; start it first")
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def boto3_client(self, service: str, config: Config | None = None) -> Any:
        """A boto3 client of ``service`` on this server (one attempt, short timeouts unless ``config``)."""
        import boto3

        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            config=config or client_config(),
        )

    @abc.abstractmethod
    def _command(self, port: int) -> Sequence[str]:
        """The argv that starts the server on ``port`` (0: any free port)."""

    @abc.abstractmethod
    def _probe(self) -> None:
        """One cheap API call; raises while the server cannot serve yet."""

    def start(self) -> Self:
        """Start the server and block until it answers an API call."""
        if self.running:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Appending keeps the history of a server restarted by a fault test in one file.
        with self.log_path.open("ab") as log:
            offset = log.tell()
            self._proc = subprocess.Popen(
                list(self._command(self.port)),
                stdin=subprocess.PIPE,  # held open: its end-of-file tells the server to exit
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                # Its own session, so a Ctrl-C meant for `make run` does not kill the
                # server before LocalAws has stopped it in order.
                start_new_session=True,
            )
        try:
            self.port = self._wait_for_port(offset)
            self._wait_until_serving()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate the server and wait for it; the port is kept for a restart."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        if proc.poll() is None:
            # A paused server ignores SIGTERM until it is continued.
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections open but nothing answers."""
        if self._proc is None:
            raise RuntimeError(f"{self.name} is not running")
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Undo :meth:`pause`; the server keeps its data."""
        if self._proc is None:
            raise RuntimeError(f"{self.name} is not running")
        self._proc.send_signal(signal.SIGCONT)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _fail(self, why: str) -> ServerStartError:
        return ServerStartError(f"{self.name} {why}; last lines of {self.log_path}:\n{self.log_tail()}")

    def _deadline_passed(self, deadline: float) -> None:
        assert self._proc is not None
        code = self._proc.poll()
        if code is not None:
            raise self._fail(f"exited with code {code} while starting")
        if time.monotonic() > deadline:
            raise self._fail(f"did not answer within {self.start_timeout:.0f} s")

    def _wait_for_port(self, offset: int) -> int:
        deadline = time.monotonic() + self.start_timeout
        while True:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                found = _LISTENING.search(log.read())
            if found:
                return int(found.group(1))
            self._deadline_passed(deadline)
            time.sleep(0.02)

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                self._probe()
                return
            except Exception as exc:  # whatever the client raises, the answer is "not yet"
                last = exc
            try:
                self._deadline_passed(deadline)
            except ServerStartError as exc:
                raise exc from last
            time.sleep(0.02)
