"""The gateway's settings, read from the environment once at start-up."""

from __future__ import annotations

import json
import logging
import secrets
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from evreserve.settings import CoreSettings


def _random_instance_id() -> str:
    return secrets.token_hex(6)


def _get_json(url: str) -> Any:
    # The task metadata endpoint is link-local and answers in milliseconds; a short
    # timeout keeps a broken one from holding up the start.
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (URL set by the ECS agent)
        return json.load(response)


def ecs_task_id(environ: Mapping[str, str], fetch: Callable[[str], Any] = _get_json) -> str | None:
    """The ECS task id, to be the instance id when ``INSTANCE_ID`` is not set; else None.

    On ECS (Fargate platform 1.4+) the agent sets ``ECS_CONTAINER_METADATA_URI_V4``;
    ``{uri}/task`` answers ``TaskARN`` = ``arn:aws:ecs:{region}:{account}:task/{cluster}/{id}``.
    The task id (32 hex digits) names the instance's queue, so a queue, a log stream and
    a task in the console are matched by eye. Any unique id works, so when the endpoint
    fails the settings' random id is used and the failure is logged, not fatal.
    """
    uri = environ.get("ECS_CONTAINER_METADATA_URI_V4")
    if environ.get("INSTANCE_ID") or not uri:
        return None
    try:
        task_arn = fetch(f"{uri.rstrip('/')}/task")["TaskARN"]
        task_id = str(task_arn).rsplit("/", 1)[-1]
    except Exception:
        logging.getLogger("evreserve_gateway").warning("no task id from the ECS metadata endpoint", exc_info=True)
        return None
    return task_id or None


class GatewaySettings(CoreSettings):
    """CoreSettings plus what only the gateway process needs (see docs/gateway.md)."""

    gateway_host: str = "127.0.0.1"
    #: 0 picks a free port (tests); ``Gateway.port`` tells which.
    gateway_port: int = Field(9000, ge=0, le=65535)
    #: Names this process's queue and its registrations; the ECS task id in production.
    instance_id: str = Field(default_factory=_random_instance_id, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    #: How chargers reach this gateway (behind the load balancer); informational.
    gateway_public_url: str | None = None
    #: Terminate TLS here instead of at the load balancer (both or neither).
    gateway_tls_cert_file: Path | None = None
    gateway_tls_key_file: Path | None = None
    #: Security profile 3: a second listener, TLS with client certificates (a load balancer
    #: passes its TCP through: a TLS listener there cannot check client certificates).
    #: ``None``: off; 0 picks a free port (tests). Needs its own certificate and key (the
    #: main listener usually has none: the load balancer terminates its TLS) and the CA file.
    gateway_mtls_port: int | None = Field(None, ge=0, le=65535)
    gateway_mtls_cert_file: Path | None = None
    gateway_mtls_key_file: Path | None = None
    #: The CAs (PEM bundle) that issue chargers' certificates; each profile 3 charger's own
    #: CA, from its registry entry, is checked on top of the chain the TLS handshake verified.
    gateway_tls_client_ca_file: Path | None = None
    #: The same three as PEM text instead of files (ECS passes secrets as variables).
    gateway_mtls_cert_pem: SecretStr | None = None
    gateway_mtls_key_pem: SecretStr | None = None
    gateway_tls_client_ca_pem: str | None = None

    @field_validator(
        "gateway_mtls_port",
        "gateway_mtls_cert_file",
        "gateway_mtls_key_file",
        "gateway_tls_client_ca_file",
        "gateway_mtls_cert_pem",
        "gateway_mtls_key_pem",
        "gateway_tls_client_ca_pem",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # template.yaml sets these to "" where security profile 3 is not deployed.
        return None if value == "" else value

    #: WebSocket keepalive. Some chargers never answer pings, so this is generous.
    gateway_ping_interval_s: float | None = Field(60.0, gt=0)
    gateway_ping_timeout_s: float | None = Field(60.0, gt=0)
    #: OCPP frames are small; a bound keeps one charger from exhausting memory.
    gateway_max_frame_bytes: int = Field(1024 * 1024, ge=1024)
    #: permessage-deflate costs ~100 KiB per connection; off unless asked for.
    gateway_compression: bool = False
    #: Seconds between Heartbeats the gateway asks for in its BootNotification answer.
    gateway_heartbeat_interval_s: int = Field(300, ge=1)
    #: The event loop: uvloop (libuv, its I/O in C) unless asked otherwise; "asyncio" is
    #: the standard library's, for comparison or where uvloop cannot be installed.
    gateway_event_loop: Literal["uvloop", "asyncio"] = "uvloop"

    #: SQS long-poll wait (at most 20); shorter only speeds up shutdown in tests.
    gateway_queue_wait_s: int = Field(20, ge=0, le=20)
    #: Receives of an unreadable message before SQS moves it to the DLQ (the gateway shows
    #: it again at once each time, so all of them fall well within the queue's retention).
    gateway_queue_max_receive_count: int = Field(3, ge=1, le=1000)

    #: On SIGTERM: how long in-flight commands may still finish before the sockets close.
    gateway_drain_timeout_s: float = Field(10.0, ge=0)
    #: How often DynamoDB is probed (one read), so that connections registered during
    #: an outage are written again once it is back.
    gateway_storage_probe_s: float = Field(10.0, gt=0)
    #: How long this instance's lease lasts: once it lapses (the instance was killed, or
    #: cannot reach DynamoDB), any other instance marks its chargers Disconnected and
    #: deletes its queue. Renewed every ``gateway_lease_renew_s``; an instance is reaped
    #: at most lease + renew after it died (40 s by default).
    gateway_lease_s: float = Field(30.0, gt=0)
    #: The queue where outcomes that could not be stored wait for DynamoDB (``commands.spool``);
    #: unset, such an outcome waits in memory for the command's redelivery.
    outcome_spool_url: str | None = None
    gateway_lease_renew_s: float = Field(10.0, gt=0)
    #: Threads running the blocking DynamoDB / SQS calls.
    gateway_io_threads: int = Field(32, ge=2)
    #: Threads running scrypt; few, so an attack on passwords cannot starve the storage calls.
    gateway_auth_threads: int = Field(4, ge=1)
    #: Opening handshakes (registry read, password check) in progress at once. In a
    #: connect storm the excess gets 503 with a Retry-After at once, not a queue.
    gateway_max_handshakes: int = Field(32, ge=1)
    #: Longest the gateway works on one handshake before answering 503 + Retry-After;
    #: websockets' open timeout (the whole handshake, silent when it fires) is twice this.
    gateway_handshake_timeout_s: float = Field(5.0, gt=0)

    #: Failed logins an identity may make for free; each further one locks it (1, 2, 4 ... s).
    gateway_login_failures_per_identity: int = Field(3, ge=1)
    #: Failed logins (and unknown identities) from one address before it is locked out.
    #: Off (0) by default: behind a balancer that does not preserve client addresses (the
    #: local TCP balancer, an NLB without client IP preservation) every charger shares
    #: the balancer's address and one guesser would lock them all out. Turn it on (e.g.
    #: 30) where the gateway sees the chargers' own addresses.
    gateway_login_failures_per_address: int = Field(0, ge=0)
    #: The first lock, doubled per further failure, capped.
    gateway_login_lockout_base_s: float = Field(1.0, gt=0)
    gateway_login_lockout_max_s: float = Field(300.0, gt=0)

    #: Per-charger budget of incoming frames (token bucket). A charger sends about one
    #: message a minute at rest and bursts at boot; 0 turns the limit off (benchmarks).
    #: A change to an access ID reaches this instance's chargers within this long
    #: (docs/api.md, "Access IDs"); each token is read at most once per period.
    gateway_access_id_cache_s: float = Field(30.0, ge=0, le=3600)
    #: Tokens remembered at most (under 1 KB each), least recently presented first out.
    gateway_access_id_cache_entries: int = Field(20_000, ge=1)
    #: How often the gateway's own metrics are logged (CloudWatch embedded metric format).
    gateway_metrics_interval_s: float = Field(60.0, gt=0, le=3600)
    gateway_charger_frames_per_s: float = Field(20.0, ge=0)
    gateway_charger_frame_burst: int = Field(200, ge=1)

    #: How long a thread holding the GIL runs before the event loop may take it back
    #: (``sys.setswitchinterval``; Python's default is 5 ms). The loop gives the GIL up at
    #: every poll; with the default, each time a storage thread was running Python (the
    #: message log's packing and botocore) the loop then waited up to 5 ms to run again,
    #: and throughput at 1,000 busy chargers fell 20% (docs/decisions.md).
    gateway_switch_interval_s: float = Field(0.0005, gt=0, le=0.1)
    #: Log every CALL and its answer (GET /api/ocpp-messages); off only for comparison.
    gateway_message_log: bool = True
    #: A charger's logged messages are stored once the first of them is this old (or its
    #: batch is full): the log's delay, and its cost (docs/scaling.md: 300 s keeps a fleet
    #: within $10 a month per 1,000 chargers). At most 900 (the batches' span bound).
    gateway_message_log_flush_s: float = Field(300.0, gt=0, le=900)
    #: Everything the log may hold in memory, waiting and being written; past it, while
    #: storage is slow or down, new messages are dropped and counted.
    gateway_message_log_max_bytes: int = Field(64 * 1024 * 1024, ge=16 * 1024)
    #: Days a logged message is kept (DynamoDB's TTL deletes it then).
    ocpp_message_retention_days: int = Field(30, ge=1, le=3650)

    @model_validator(mode="after")
    def _tls_pair(self) -> GatewaySettings:
        if (self.gateway_tls_cert_file is None) != (self.gateway_tls_key_file is None):
            raise ValueError("set both GATEWAY_TLS_CERT_FILE and GATEWAY_TLS_KEY_FILE, or neither")
        if self.gateway_mtls_port is not None and None in (
            self.gateway_mtls_cert_file or self.gateway_mtls_cert_pem,
            self.gateway_mtls_key_file or self.gateway_mtls_key_pem,
            self.gateway_tls_client_ca_file or self.gateway_tls_client_ca_pem,
        ):
            raise ValueError(
                "GATEWAY_MTLS_PORT needs the gateway's certificate and key (GATEWAY_MTLS_CERT_FILE and"
                " GATEWAY_MTLS_KEY_FILE, or _PEM) and the chargers' CAs (GATEWAY_TLS_CLIENT_CA_FILE or _PEM)"
            )
        return self

    @model_validator(mode="after")
    def _renew_within_lease(self) -> GatewaySettings:
        if self.gateway_lease_renew_s * 2 > self.gateway_lease_s:
            raise ValueError(
                "GATEWAY_LEASE_RENEW_S must be at most half of GATEWAY_LEASE_S, "
                "or one slow renewal lets the others reap a live instance"
            )
        return self

    @property
    def queue_name(self) -> str:
        return f"{self.gateway_queue_prefix}{self.instance_id}"
