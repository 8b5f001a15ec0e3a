"""The home of the gateway's wiring: settings in, the stores and adapters one instance runs on out.

The gateway's ``build_services`` (``evreserve.services.bootstrap``): the one place it
builds AWS clients, stores, its queue's clients and thread pools. ``Gateway`` takes
what this returns, so a test hands it a stand-in (a store that fails on cue, a counting
password check) with ``dataclasses.replace`` instead of patching a running gateway.
Nothing here calls AWS: clients connect on first use, from the gateway's I/O threads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from evreserve import aws
from evreserve.security import verify_password
from evreserve.storage.access_ids import AccessIdStore
from evreserve.storage.accounts import AccountStore
from evreserve.storage.commands import CommandLedger
from evreserve.storage.instances import InstanceStore
from evreserve.storage.messages import MessageLogStore
from evreserve.storage.registry import RegistryStore
from evreserve.storage.reservations import ReservationStore

from .commands.queue import InstanceQueue
from .commands.spool import OutcomeSpool
from .log_writer import LogWriter, ProcessWriter, ThreadWriter
from .offload import Offload
from .settings import GatewaySettings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

#: Margin over the long-poll wait for the HTTP read of ReceiveMessage.
_POLL_READ_MARGIN_S = 10


@dataclass(frozen=True, slots=True)
class Dependencies:
    """What one gateway instance runs on. Its own: the gateway shuts the thread pools down when it stops."""

    registry: RegistryStore
    reservations: ReservationStore
    #: The instances' leases (who is alive), in the registry table.
    instances: InstanceStore
    ledger: CommandLedger
    #: This instance's queue, for the short calls (create, delete messages, wake up, drain, delete).
    queue: InstanceQueue
    #: The same queue on a client whose read timeout allows for the long poll.
    poll_queue: InstanceQueue
    #: Threads for the blocking DynamoDB / SQS calls.
    io: Offload
    #: Threads for scrypt: few, so an attack on passwords cannot starve the storage calls.
    auth: Offload
    #: ``(password, stored hash) -> bool``; blocking (scrypt), run on ``auth``.
    verify_password: Callable[[str, str], bool]
    #: Drivers' tokens, which Authorize is answered from (through ``tokens.TokenCache``).
    access_ids: AccessIdStore
    #: Accounts, for their policy on unregistered tokens.
    accounts: AccountStore
    #: Where outcomes that could not be stored wait for DynamoDB; ``None``: in memory only.
    spool: OutcomeSpool | None = None
    #: Where the OCPP message log's batches are stored from; ``None``: no message log.
    log_writer: LogWriter | None = None


def bootstrap(
    settings: GatewaySettings,
    *,
    dynamodb: DynamoDBClient | None = None,
    sqs: SQSClient | None = None,
) -> Dependencies:
    """Build what a gateway instance runs on; AWS clients may be injected (tests)."""
    injected = dynamodb
    dynamodb = dynamodb or aws.dynamodb_client(settings)
    # Long polls outlast the core's short read timeout, so they get their own client;
    # an injected client (tests) serves both and must allow for the wait.
    poll_sqs = sqs or aws.sqs_client(
        settings.model_copy(update={"aws_read_timeout_s": settings.gateway_queue_wait_s + _POLL_READ_MARGIN_S})
    )
    sqs = sqs or aws.sqs_client(settings)
    return Dependencies(
        registry=RegistryStore(dynamodb, settings.registry_table),
        instances=InstanceStore(dynamodb, settings.registry_table),
        reservations=ReservationStore(dynamodb, settings.reservations_table),
        ledger=CommandLedger(dynamodb, settings.commands_table, settings.reservations_table),
        queue=InstanceQueue(sqs, settings.queue_name),
        poll_queue=InstanceQueue(poll_sqs, settings.queue_name),
        io=Offload(settings.gateway_io_threads, "gw-io"),
        auth=Offload(settings.gateway_auth_threads, "gw-auth"),
        verify_password=verify_password,
        access_ids=AccessIdStore(dynamodb, settings.registry_table),
        accounts=AccountStore(dynamodb, settings.registry_table),
        spool=OutcomeSpool(sqs, settings.outcome_spool_url) if settings.outcome_spool_url else None,
        log_writer=_log_writer(settings, injected) if settings.gateway_message_log else None,
    )


def _log_writer(settings: GatewaySettings, injected: DynamoDBClient | None) -> LogWriter:
    """A process of its own; a thread when a client is injected (it cannot go to another process)."""
    if injected is None:
        return ProcessWriter(settings, settings.ocpp_message_retention_days)
    store = MessageLogStore(injected, settings.ocpp_messages_table, settings.ocpp_message_retention_days)
    return ThreadWriter(store, Offload(1, "gw-log"))
