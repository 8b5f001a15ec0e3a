"""The composition root of the API functions: settings in, services out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import boto3

from ..aws import dynamodb_client, sqs_client
from ..channel import CommandChannel, CommandLedger
from ..models import utcnow
from ..settings import CoreSettings
from ..storage.registry import RegistryStore
from ..storage.reservations import ReservationStore
from .accounts import AccountService
from .chargers import ChargerService
from .reservations import ReservationService

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient


@dataclass(frozen=True, slots=True)
class Services:
    #: The DynamoDB client every store shares (the functions' glue reuses it for the rate limit).
    dynamodb: DynamoDBClient
    registry: RegistryStore
    accounts: AccountService
    chargers: ChargerService
    reservations: ReservationService


def build_services(
    settings: CoreSettings,
    *,
    dynamodb: DynamoDBClient | None = None,
    sqs: SQSClient | None = None,
    channel: CommandChannel | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Services:
    """Wire the stores and services; clients (or the whole channel) may be injected."""
    # One session for both clients, built in this thread (sessions are not thread-safe).
    session = boto3.session.Session() if dynamodb is None or (channel is None and sqs is None) else None
    dynamodb = dynamodb or dynamodb_client(settings, session)
    registry = RegistryStore(dynamodb, settings.registry_table)
    reservations = ReservationStore(dynamodb, settings.reservations_table)
    if channel is None:
        ledger = CommandLedger(dynamodb, settings.commands_table, settings.reservations_table)
        channel = CommandChannel(ledger, sqs or sqs_client(settings, session), settings, clock=clock)
    return Services(
        dynamodb=dynamodb,
        registry=registry,
        accounts=AccountService(registry, clock),
        chargers=ChargerService(registry, clock),
        reservations=ReservationService(registry, reservations, channel, settings, clock),
    )
