"""The local AWS stack behaves like the parts of AWS the service relies on."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from devstack import client_config
from devstack.localaws import LocalAws
from devstack.template import (
    Intrinsic,
    TemplateError,
    check_resource_maps,
    load_template,
    queue_definitions,
    table_definitions,
)
from evreserve.resources import BY_INSTANCE, DESTINATION_QUEUE_ENV, GSI1, PK, QUEUE_ENV, SK, TABLE_ENV, TTL_ATTRIBUTE

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

pytestmark = pytest.mark.integration

TEMPLATE = load_template()


def _listening_addresses(port: int) -> list[str]:
    """Local addresses of the LISTEN sockets on ``port``, read from /proc/net."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.rsplit(":", 1)
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                found.append(address)
    return found


_LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}


# --- template translation (no server needed) -----------------------------------------


def test_short_tags_load_as_intrinsics(tmp_path: Path) -> None:
    """!GetAtt X.Arn and !Ref X load as markers, not as errors or strings."""
    path = tmp_path / "t.yaml"
    path.write_text(
        "Resources:\n  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n      A: !GetAtt D.Arn\n      B: !Ref D\n"
    )
    props = load_template(path)["Resources"]["Q"]["Properties"]
    assert props == {"A": Intrinsic("GetAtt", ["D", "Arn"]), "B": Intrinsic("Ref", "D")}


def test_a_table_missing_from_table_env_is_refused() -> None:
    """A table added to template.yaml but not to evreserve.resources fails loudly."""
    template = json.loads(json.dumps(TEMPLATE, default=str))
    template["Resources"]["StrayTable"] = template["Resources"][next(iter(TABLE_ENV))]
    with pytest.raises(TemplateError, match="StrayTable"):
        check_resource_maps(template)


def test_an_untranslated_property_is_refused() -> None:
    """A queue property the devstack does not know is an error, not silently dropped."""
    template = {"Resources": {"Q": {"Type": "AWS::SQS::Queue", "Properties": {"NewFeature": 1}}}}
    with pytest.raises(TemplateError, match="NewFeature"):
        queue_definitions(template)


# --- DynamoDB Local ---------------------------------------------------------------------


def test_template_tables_exist_with_their_indexes(local_aws: LocalAws, dynamodb_client: DynamoDBClient) -> None:
    """Every template table exists under its env var's name, with its key schema and GSIs."""
    for logical_id, table in table_definitions(TEMPLATE).items():
        described = dynamodb_client.describe_table(TableName=local_aws.resources[TABLE_ENV[logical_id]])["Table"]
        assert described["KeySchema"] == table.create_kwargs["KeySchema"]
        expected = {i["IndexName"] for i in table.create_kwargs.get("GlobalSecondaryIndexes", [])}
        assert {i["IndexName"] for i in described.get("GlobalSecondaryIndexes", [])} == expected
    registry = dynamodb_client.describe_table(TableName=local_aws.resources["REGISTRY_TABLE"])["Table"]
    assert sorted(i["IndexName"] for i in registry["GlobalSecondaryIndexes"]) == sorted([GSI1, BY_INSTANCE])


def test_ttl_is_enabled_where_the_template_asks(local_aws: LocalAws, dynamodb_client: DynamoDBClient) -> None:
    """Tables with a TimeToLiveSpecification have TTL on `ttl`; the others have none."""
    ttl_tables = 0
    for logical_id, table in table_definitions(TEMPLATE).items():
        name = local_aws.resources[TABLE_ENV[logical_id]]
        ttl = dynamodb_client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if table.ttl_attribute:
            ttl_tables += 1
            assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", TTL_ATTRIBUTE)
        else:
            assert ttl["TimeToLiveStatus"] == "DISABLED"
    assert ttl_tables >= 1


def test_failed_condition_raises_conditional_check_failed(dynamodb_client: DynamoDBClient) -> None:
    """A second create guarded by attribute_not_exists fails with ConditionalCheckFailed."""
    table, key = _table("RESERVATIONS_TABLE"), _key()
    dynamodb_client.put_item(TableName=table, Item=key, ConditionExpression="attribute_not_exists(pk)")
    with pytest.raises(dynamodb_client.exceptions.ConditionalCheckFailedException):
        dynamodb_client.put_item(TableName=table, Item=key, ConditionExpression="attribute_not_exists(pk)")


def test_transact_write_items_is_all_or_nothing(dynamodb_client: DynamoDBClient) -> None:
    """A transaction with one failing condition writes none of its items."""
    table, taken, fresh = _table("RESERVATIONS_TABLE"), _key(), _key()
    dynamodb_client.put_item(TableName=table, Item=taken)
    guarded = {"TableName": table, "ConditionExpression": "attribute_not_exists(pk)"}
    with pytest.raises(dynamodb_client.exceptions.TransactionCanceledException):
        dynamodb_client.transact_write_items(
            TransactItems=[{"Put": {**guarded, "Item": fresh}}, {"Put": {**guarded, "Item": taken}}]
        )
    assert "Item" not in dynamodb_client.get_item(TableName=table, Key=fresh)
    dynamodb_client.transact_write_items(TransactItems=[{"Put": {**guarded, "Item": fresh}}])
    assert "Item" in dynamodb_client.get_item(TableName=table, Key=fresh)


def test_client_errors_are_client_errors(dynamodb_client: DynamoDBClient) -> None:
    """An unknown table is a ResourceNotFoundException, a ClientError like on AWS."""
    with pytest.raises(ClientError) as err:
        dynamodb_client.get_item(TableName="no-such-table", Key=_key())
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"


# --- SQS ----------------------------------------------------------------------------------


def test_template_queues_exist(local_aws: LocalAws, sqs_client: SQSClient) -> None:
    """Every template queue exists at its env var's URL, with the template's attributes."""
    for logical_id, queue in queue_definitions(TEMPLATE).items():
        url = local_aws.resources[{**QUEUE_ENV, **DESTINATION_QUEUE_ENV}[logical_id]]
        attributes = sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert queue.plain_attributes.items() <= attributes.items()
    assert local_aws.resources["COMMAND_DLQ_URL"].endswith("-CommandDeadLetterQueue")


def test_send_receive_delete_round_trip(sqs_client: SQSClient) -> None:
    """A message sent is received once, and gone after delete."""
    url = _gateway_queue(sqs_client)
    sqs_client.send_message(QueueUrl=url, MessageBody="ReserveNow")
    got = sqs_client.receive_message(QueueUrl=url, WaitTimeSeconds=2)["Messages"]
    assert [m["Body"] for m in got] == ["ReserveNow"]
    sqs_client.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
    assert "Messages" not in sqs_client.receive_message(QueueUrl=url, VisibilityTimeout=0, WaitTimeSeconds=0)


def test_redrive_policy_moves_a_poison_message_to_the_dlq(local_aws: LocalAws, sqs_client: SQSClient) -> None:
    """GIVEN a queue redriving to the template's DLQ after one receive,
    WHEN its message is received again, THEN it is in the DLQ instead."""
    dlq = local_aws.resources["COMMAND_DLQ_URL"]
    dlq_arn = sqs_client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})
    url = _gateway_queue(sqs_client, RedrivePolicy=policy)
    body = f"poison-{uuid.uuid4()}"
    sqs_client.send_message(QueueUrl=url, MessageBody=body)
    assert sqs_client.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"][0]["Body"] == body

    assert "Messages" not in sqs_client.receive_message(QueueUrl=url, VisibilityTimeout=0)
    in_dlq = sqs_client.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    assert body in [m["Body"] for m in in_dlq.get("Messages", [])]


# --- isolation and faults ----------------------------------------------------------------


def test_servers_listen_on_loopback_only(local_aws: LocalAws) -> None:
    """Neither server accepts connections from another interface."""
    for port in (local_aws.dynamodb.port, local_aws.sqs.port):
        addresses = _listening_addresses(port)
        assert addresses, f"nothing listens on {port}"
        assert set(addresses) <= _LOOPBACK, addresses


@pytest.fixture(scope="module")
def own_aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAws]:
    """A stack of this module's own: a restarted DynamoDB Local (in memory) loses its items, and the
    session's stack holds what other tests seeded (the admin key among them)."""
    with LocalAws(prefix=f"r{os.getpid()}", log_dir=tmp_path_factory.mktemp("restart-logs")) as aws:
        yield aws


@pytest.mark.parametrize("service", ["dynamodb", "sqs"])
def test_a_stopped_server_fails_calls_fast_and_comes_back(own_aws: LocalAws, service: str) -> None:
    """With the server down a call fails at once with a connection error; after a
    restart on the same port the template's resources are there again."""
    local_aws = own_aws
    client = getattr(local_aws, service).client(client_config(connect_timeout=1, read_timeout=2))
    list_names, env_names = {
        "dynamodb": (lambda: client.list_tables()["TableNames"], TABLE_ENV.values()),
        "sqs": (lambda: client.list_queues()["QueueUrls"], QUEUE_ENV.values()),
    }[service]
    getattr(local_aws, f"stop_{service}")()
    try:
        started = time.monotonic()
        with pytest.raises((EndpointConnectionError, ConnectTimeoutError)):
            list_names()
        assert time.monotonic() - started < 2
    finally:
        getattr(local_aws, f"start_{service}")()
    assert {local_aws.resources[env] for env in env_names} <= set(list_names())


def test_a_paused_server_times_out_instead_of_hanging(local_aws: LocalAws) -> None:
    """A frozen server costs a caller its read timeout, then a ReadTimeoutError."""
    client = local_aws.dynamodb.client(client_config(connect_timeout=1, read_timeout=1))
    local_aws.pause_dynamodb()
    try:
        started = time.monotonic()
        with pytest.raises(ReadTimeoutError):
            client.list_tables()
        assert time.monotonic() - started < 3
    finally:
        local_aws.resume_dynamodb()
    assert client.list_tables()["TableNames"]


# --- helpers -------------------------------------------------------------------------------


def _table(env: str) -> str:
    return os.environ[env]


def _key() -> dict[str, dict[str, str]]:
    return {PK: {"S": f"TEST#{uuid.uuid4()}"}, SK: {"S": "META"}}


def _gateway_queue(sqs: SQSClient, **attributes: str) -> str:
    """A fresh queue named as a gateway instance's would be."""
    name = f"{os.environ['GATEWAY_QUEUE_PREFIX']}{uuid.uuid4().hex[:12]}"
    return sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]  # type: ignore[arg-type]
