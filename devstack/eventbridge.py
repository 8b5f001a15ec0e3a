"""An EventBridge stand-in on 127.0.0.1: moto's server with all its services, in a child process.

Reservation events go to a bus (``PutEvents``); a partner routes them with rules, for
instance to an SQS queue. moto delivers a rule's events to its targets inside its own
process, so the target queue must live in the same server: this one serves every moto
service (EventBridge and SQS among them), unlike ``devstack.sqs``, which serves SQS alone
for speed. A test creates its rule's queue here (``client("sqs")``).

``python -m devstack.eventbridge --port 0`` is the child's entry point; it prints
``DEVSTACK_LISTENING host:port`` and exits when its stdin closes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from botocore.config import Config

from devstack import LocalServer
from devstack.sqs import serve_moto


class EventBridgeLocal(LocalServer):
    name = "eventbridge"

    def _command(self, port: int) -> Sequence[str]:
        return [sys.executable, "-u", "-m", "devstack.eventbridge", "--port", str(port)]

    def client(self, service: str = "events", config: Config | None = None) -> Any:
        """A boto3 client of ``service`` (``events``, or ``sqs`` for rule targets) on this server."""
        return self.boto3_client(service, config)

    def _probe(self) -> None:
        self.client().list_event_buses(Limit=1)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="moto's EventBridge (and its rule targets) on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    serve_moto(DomainDispatcherApplication(create_backend_app), args.port)


if __name__ == "__main__":
    main()
