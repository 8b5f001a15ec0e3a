"""The composition root of the API functions: settings in, services out."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from ..aws import dynamodb_client, sqs_client
from ..models import utcnow
from ..settings import CoreSettings, WebhookSettings
from ..storage.accounts import AccountStore
from ..storage.messages import MessageLogStore
from ..storage.registry import RegistryStore
from .accounts import AccountService
from .chargers import ChargerService
from .messages import MessageLogService

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

    from ..channel import CloseSession, CommandChannel
    from .access_ids import AccessIdService
    from .reservations import ReservationService
    from .webhooks import WebhookService


class Services:
    """The services of one entrypoint.

    The reservation service is built on first use: only the reservations function sends
    commands to chargers, so the other functions never import the command channel nor
    build an SQS client (~15 ms of import and ~20 ms of client at their cold start).
    """

    __slots__ = (
        "_access_ids",
        "_build_reservations",
        "_build_webhooks",
        "_clock",
        "_lock",
        "_reservations",
        "_webhooks",
        "account_store",
        "accounts",
        "chargers",
        "dynamodb",
        "messages",
        "registry",
    )

    def __init__(
        self,
        dynamodb: DynamoDBClient,
        registry: RegistryStore,
        account_store: AccountStore,
        accounts: AccountService,
        chargers: ChargerService,
        reservations: Callable[[], ReservationService],
        messages: MessageLogService,
        webhooks: Callable[[], WebhookService] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        #: The DynamoDB client every store shares (the functions' glue reuses it for the rate limit).
        self.dynamodb = dynamodb
        self.registry = registry
        self.account_store = account_store
        self.accounts = accounts
        self.chargers = chargers
        self.messages = messages
        self._clock = clock
        self._build_reservations = reservations
        self._reservations: ReservationService | None = None
        self._build_webhooks = webhooks
        self._webhooks: WebhookService | None = None
        self._access_ids: AccessIdService | None = None
        self._lock = threading.Lock()

    @property
    def access_ids(self) -> AccessIdService:
        # Built on first use: only the access IDs function imports their modules.
        with self._lock:
            if self._access_ids is None:
                from ..storage.access_ids import AccessIdStore
                from .access_ids import AccessIdService

                self._access_ids = AccessIdService(AccessIdStore(self.dynamodb, self.registry.table), self._clock)
            return self._access_ids

    @property
    def reservations(self) -> ReservationService:
        # Locked: the local stack serves one function's requests on several threads.
        with self._lock:
            if self._reservations is None:
                self._reservations = self._build_reservations()
            return self._reservations

    @property
    def webhooks(self) -> WebhookService:
        with self._lock:
            if self._webhooks is None:
                if self._build_webhooks is None:
                    raise RuntimeError("webhooks need WebhookSettings (WEBHOOKS_TABLE)")
                self._webhooks = self._build_webhooks()
            return self._webhooks


def build_services(
    settings: CoreSettings,
    *,
    dynamodb: DynamoDBClient | None = None,
    sqs: SQSClient | None = None,
    channel: CommandChannel | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Services:
    """Wire the stores and services; clients (or the whole channel) may be injected."""
    dynamodb = dynamodb or dynamodb_client(settings)
    registry = RegistryStore(dynamodb, settings.registry_table)
    account_store = AccountStore(dynamodb, settings.registry_table)

    sqs_lock = threading.Lock()
    built: list[SQSClient] = []

    def sqs_once() -> SQSClient:
        # Built on first use (most requests never queue a command), once.
        with sqs_lock:
            if not built:
                built.append(sqs or sqs_client(settings))
            return built[0]

    def close_session(queue_url: str, request: CloseSession) -> None:
        from ..channel import close_session as send

        send(sqs_once(), queue_url, request)

    def reservations() -> ReservationService:
        from ..channel import CommandChannel
        from ..storage.commands import CommandLedger
        from ..storage.reservations import ReservationStore
        from .reservations import ReservationService

        store = ReservationStore(dynamodb, settings.reservations_table, settings.reservation_retention_days)
        commands = channel
        if commands is None:
            ledger = CommandLedger(dynamodb, settings.commands_table, settings.reservations_table)
            commands = CommandChannel(ledger, sqs_once(), settings, clock=clock)
        return ReservationService(registry, store, commands, settings, clock, rules=settings)

    def webhooks() -> WebhookService:
        from ..storage.webhooks import WebhookStore
        from .webhooks import WebhookService

        assert isinstance(settings, WebhookSettings)
        store = WebhookStore(dynamodb, settings.webhooks_table, settings.webhook_delivery_retention_days)
        return WebhookService(
            store,
            clock,
            max_per_account=settings.max_webhooks_per_account,
            allow_local_http=settings.webhook_allow_local_http,
        )

    chargers = ChargerService(registry, clock, close_session)
    return Services(
        dynamodb=dynamodb,
        registry=registry,
        account_store=account_store,
        accounts=AccountService(account_store, registry, clock, settings.max_api_keys_per_account),
        chargers=chargers,
        reservations=reservations,
        messages=MessageLogService(chargers, MessageLogStore(dynamodb, settings.ocpp_messages_table), clock),
        webhooks=webhooks if isinstance(settings, WebhookSettings) else None,
        clock=clock,
    )
