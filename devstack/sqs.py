"""An SQS-compatible server on 127.0.0.1: moto in server mode, in a child process.

moto was picked over ministack by measurement (``benchmarks/sqs_candidates.py``, figures
in ``docs/decisions.md``): its long poll wakes on a condition variable (~7 ms from
SendMessage to the blocked ReceiveMessage returning) where ministack polls every 100 ms,
and that wake-up sits on every reservation's path. Its weakness is that each call walks
the whole queue, so it slows down as a backlog grows; queues that the stack drains
continuously never get there.

``python -m devstack.sqs --port 0`` is the child's entry point: it serves moto's SQS
application with waitress, keeping connections as SQS does (``serve_moto``), prints
``DEVSTACK_LISTENING host:port`` and exits when its stdin closes. It serves the SQS
application alone, not moto's dispatcher of every service (which works out the service
from each request anew), with Flask's debug mode off and no per-request log line: the
three together were a fifth of the server's CPU in
``benchmarks/reservation_roundtrip.py``'s profile, and that CPU is shared with the rest
of the stack.

It also drops messages past their queue's retention, as SQS does and moto does not
(``drop_expired_messages``): the gateway deletes nothing, leaving every handled
command to expire, so without that a long ``make run`` would keep every command it
ever sent and walk them all on every call.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.config import Config

from devstack import HOST, LocalServer

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


class SqsLocal(LocalServer):
    """moto's SQS, in memory; queue URLs it returns point at this endpoint."""

    name = "sqs"

    def __init__(self, port: int = 0, log_path: Path | None = None, start_timeout: float = 30.0) -> None:
        super().__init__(port, log_path, start_timeout)
        self._probe_client: SQSClient | None = None

    def _command(self, port: int) -> Sequence[str]:
        # -u: the readiness line must reach the log file without waiting for a buffer.
        return [sys.executable, "-u", "-m", "devstack.sqs", "--port", str(port)]

    def client(self, config: Config | None = None) -> SQSClient:
        """A boto3 client on this server (one attempt, short timeouts unless ``config``)."""
        client: SQSClient = self.boto3_client("sqs", config)
        return client

    def _probe(self) -> None:
        if self._probe_client is None or self._probe_client.meta.endpoint_url != self.endpoint:
            self._probe_client = self.client()
        self._probe_client.list_queues(MaxResults=1)


def _exit_when_stdin_closes() -> None:
    def watch() -> None:
        while sys.stdin.buffer.read(4096):
            pass
        # os._exit: serve_forever() holds the main thread and a clean shutdown could
        # wait on long polls (up to 20 s each); there is nothing to flush.
        os._exit(0)

    threading.Thread(target=watch, name="devstack-parent-watch", daemon=True).start()


#: How often the server looks for messages past their retention.
EXPIRY_SWEEP_S = 5.0


def drop_expired_messages(now_ms: float | None = None) -> int:
    """Remove every message older than its queue's ``MessageRetentionPeriod``; how many went.

    moto only skips such a message when receiving; it stays in the queue, in flight or not.
    moto's request threads change a queue's message list without a common lock (only
    sends take ``_messages_lock``), so this never replaces a list a request may be
    iterating or appending to: it removes from the message list in place, under the
    send lock, and swaps in a new pending set (a receive iterating the old one finishes
    on it). A message that expired in the instant a receive moves it to the DLQ is the
    one interleaving left, and it costs that receive an error, not a lost message.
    """
    from moto.sqs.models import sqs_backends

    now_ms = time.time() * 1000 if now_ms is None else now_ms
    dropped = 0
    for regions in list(sqs_backends.values()):
        for backend in list(regions.values()):
            for queue in list(backend.queues.values()):
                retention_s = int(queue.message_retention_period)  # type: ignore[attr-defined]
                oldest_kept_ms = now_ms - retention_s * 1000
                with queue._messages_lock:
                    expired = [m for m in list(queue._messages) if (m.sent_timestamp or now_ms) <= oldest_kept_ms]
                    for message in expired:
                        with contextlib.suppress(ValueError):  # deleted or moved meanwhile
                            queue._messages.remove(message)
                    if expired:
                        gone = {id(m) for m in expired}
                        queue._pending_messages = {m for m in list(queue._pending_messages) if id(m) not in gone}
                dropped += len(expired)
    return dropped


def _sweep_expired_messages() -> None:
    def sweep() -> None:
        while True:
            time.sleep(EXPIRY_SWEEP_S)
            try:
                drop_expired_messages()
            except Exception:
                # One bad sweep must not end expiry for the life of the server.
                traceback.print_exc()

    threading.Thread(target=sweep, name="devstack-sqs-expiry", daemon=True).start()


def _cheap_clock() -> None:
    """moto's SQS reads the time through datetime arithmetic (~6 µs) for every message on
    every call, and asks for all of a queue's attributes (each a pass over its messages)
    to check one message's retention: with a minute of handled commands kept in a queue,
    a receive cost ~100 ms. Same answers, from ``time.time()`` and the one attribute."""
    from moto.sqs import models

    exact = models.unix_time  # type: ignore[attr-defined]

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else exact(dt)

    def unix_time_millis(dt: Any = None) -> float:
        return unix_time(dt) * 1000.0

    def retained(backend: Any, queue_name: str, message: Any) -> bool:
        queue = backend.get_queue(queue_name)
        return bool(message.sent_timestamp / 1000 + int(queue.message_retention_period) > time.time())

    models.unix_time = unix_time  # type: ignore[attr-defined]
    models.unix_time_millis = unix_time_millis  # type: ignore[attr-defined]
    models.SQSBackend.is_message_valid_based_on_retention_period = retained  # type: ignore[method-assign,assignment]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="moto's SQS on 127.0.0.1, for the devstack")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)

    # Imported here: the parent process only needs SqsLocal, not moto's import time.
    from moto.moto_server.werkzeug_app import create_backend_app

    app = create_backend_app("sqs")
    # moto turns debug on; it only adds work per request (and the interactive debugger).
    app.debug = False
    _cheap_clock()
    _sweep_expired_messages()
    serve_moto(app, args.port)


#: Worker threads of the stand-in's server: each long poll (a gateway's ReceiveMessage,
#: an SQS event source's) holds one for up to 20 s, and sends must never wait behind them.
SERVER_THREADS = 128
#: Open connections it accepts: every process of the stack keeps a pool of its own.
SERVER_CONNECTIONS = 2000


def serve_moto(app: Any, port: int) -> None:
    """Serve a moto WSGI app on ``HOST:port`` until stdin closes; print the readiness line.

    With waitress, not werkzeug's development server: werkzeug closes the connection
    after every answer (and, after each one, reads whatever the client sent next as
    leftovers of the request body, so it cannot keep one), and every SQS and EventBridge
    call of the stack then paid a TCP connect and close, and the server a new thread,
    that the real services, which keep connections, do not charge. No per-request log
    line: on a busy stack it is CPU nobody reads.
    """
    from waitress.server import create_server  # type: ignore[import-untyped]

    _exit_when_stdin_closes()
    server = create_server(
        app,
        host=HOST,
        port=port,
        threads=SERVER_THREADS,
        connection_limit=SERVER_CONNECTIONS,
        # poll, not select: the connections of a large stack pass descriptor 1023.
        asyncore_use_poll=True,
        ident="devstack",
    )
    # moto builds some URLs from MOTO_PORT rather than the request's Host header.
    os.environ["MOTO_PORT"] = str(server.effective_port)
    print(f"DEVSTACK_LISTENING {HOST}:{server.effective_port}", flush=True)
    server.run()


if __name__ == "__main__":
    main()
