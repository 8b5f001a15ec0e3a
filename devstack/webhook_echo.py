"""A webhook receiver for trying the events locally: prints each event and checks its signature.

    python -m devstack.webhook_echo --api http://127.0.0.1:3000 --key <account key>

subscribes itself (``POST /api/webhooks`` with ``http://127.0.0.1:<port>/``, which only the
local stack accepts), prints every event it receives with whether its
``Evreserve-Signature`` is valid, and deletes the webhook again on Ctrl-C. With
``--secret`` instead of ``--key`` it only listens, for a webhook made by hand.
``--fail N`` answers 500 to the first N deliveries, to watch the retries (same event id,
``GET /api/webhooks/{id}/deliveries``).

``WebhookEcho`` is the same receiver for tests: ``received`` holds the events whose
signatures verified, ``rejected`` the requests that did not.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from devstack import HOST
from evreserve import signing


@dataclass
class Received:
    event: dict[str, Any]
    headers: dict[str, str]
    at: float = field(default_factory=time.time)


class WebhookEcho:
    """An HTTP receiver on 127.0.0.1 that verifies each delivery's signature."""

    def __init__(self, secret: str | None = None, *, port: int = 0, fail: int = 0, quiet: bool = True) -> None:
        self.secret = secret
        #: Answer 500 to this many more deliveries.
        self.fail = fail
        #: Answer 500 to every delivery while set (a receiver that is down).
        self.down = False
        self.quiet = quiet
        self.received: list[Received] = []
        self.rejected: list[dict[str, str]] = []
        #: Every request, answered or not: (event id header, status answered).
        self.attempts: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        echo = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = echo._take(dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((HOST, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._server.server_address[1]}/"

    def start(self) -> WebhookEcho:
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-echo", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> WebhookEcho:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _take(self, headers: dict[str, str], body: bytes) -> int:
        event_id = headers.get("Evreserve-Event-Id", "")
        with self._lock:
            if self.down or self.fail > 0:
                self.fail = max(0, self.fail - 1)
                self.attempts.append((event_id, 500))
                self._say(f"x {event_id}: answered 500 (--fail / down); it will come again")
                return 500
            valid = self.secret is not None and signing.verify(
                self.secret, headers.get(signing.HEADER, ""), body, int(time.time())
            )
            if not valid:
                self.rejected.append(headers)
                self.attempts.append((event_id, 400))
                self._say(f"! {event_id}: signature does NOT verify; answered 400")
                return 400
            event = json.loads(body)
            again = any(r.event["id"] == event["id"] for r in self.received)
            self.received.append(Received(event, headers))
            self.attempts.append((event_id, 204))
        data = event.get("data") or {}
        note = " (again: dedupe on id)" if again else ""
        self._say(
            f"✓ {event['type']:<22} {event['id']}  reservation {data.get('reservationId')}"
            f" {data.get('status')}  signature valid{note}"
        )
        return 204

    def _say(self, line: str) -> None:
        if not self.quiet:
            print(line, flush=True)

    def wait_for(self, count: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """The first ``count`` distinct events (by id), waiting up to ``timeout_s`` for them."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            events = self.events()
            if len(events) >= count:
                return events
            time.sleep(0.1)
        return self.events()

    def events(self) -> list[dict[str, Any]]:
        """The verified events, each once (the first delivery of its id), in arrival order."""
        with self._lock:
            seen: dict[str, dict[str, Any]] = {}
            for received in self.received:
                seen.setdefault(received.event["id"], received.event)
            return list(seen.values())


def _api(api: str, key: str, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(  # noqa: S310 - the local API's own URL
        api.rstrip("/") + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        raw = response.read()
    return json.loads(raw) if raw else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.webhook_echo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", default="http://127.0.0.1:3000", help="the local API (make run's)")
    parser.add_argument("--key", help="an account's API key: subscribe this receiver, unsubscribe on exit")
    parser.add_argument("--secret", help="the secret of a webhook made by hand (instead of --key)")
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--events", nargs="*", help="the types to subscribe to (default: all)")
    parser.add_argument("--fail", type=int, default=0, help="answer 500 to the first N deliveries")
    args = parser.parse_args(argv)
    if not args.key and not args.secret:
        parser.error("give --key (to subscribe) or --secret (of an existing webhook)")
    echo = WebhookEcho(args.secret, port=args.port, fail=args.fail, quiet=False).start()
    webhook_id = None
    try:
        if args.key:
            body: dict[str, Any] = {"url": echo.url, "description": "devstack.webhook_echo"}
            if args.events:
                body["events"] = args.events
            created = _api(args.api, args.key, "POST", "/api/webhooks", body)["data"]
            webhook_id, echo.secret = created["id"], created["secret"]
            print(f"subscribed {echo.url} as webhook {webhook_id}; waiting for events (Ctrl-C ends)", flush=True)
        else:
            print(f"listening on {echo.url}; waiting for events (Ctrl-C ends)", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        while not stop.wait(0.5):
            pass
    finally:
        if webhook_id is not None:
            _api(args.api, args.key, "DELETE", f"/api/webhooks/{webhook_id}")
            print(f"deleted webhook {webhook_id}", flush=True)
        echo.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
