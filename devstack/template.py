"""The tables and queues of ``template.yaml``, created on the local servers.

``template.yaml`` is the one list of tables and queues; this module reads it so the local
stack cannot drift from what gets deployed. A property this module does not know fails
loudly (:class:`TemplateError`) instead of being dropped, and so does a table or queue
missing from :data:`evreserve.resources.TABLE_ENV` / :data:`~evreserve.resources.QUEUE_ENV`
(or named there but absent from the template).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from devstack import REPO_ROOT
from evreserve.resources import BUS_ENV, DESTINATION_QUEUE_ENV, QUEUE_ENV, TABLE_ENV

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

TEMPLATE_PATH = REPO_ROOT / "template.yaml"
TABLE_TYPE = "AWS::DynamoDB::Table"
QUEUE_TYPE = "AWS::SQS::Queue"

Template = dict[str, Any]


class TemplateError(ValueError):
    """template.yaml declares something the local stack cannot reproduce faithfully."""


@dataclass(frozen=True)
class Intrinsic:
    """A CloudFormation intrinsic function (``!Ref X`` is ``Intrinsic("Ref", "X")``)."""

    fn: str
    args: Any


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that keeps CloudFormation short tags as :class:`Intrinsic` markers."""


def _construct_intrinsic(loader: _CfnLoader, tag_suffix: str, node: yaml.Node) -> Intrinsic:
    args: Any
    if isinstance(node, yaml.ScalarNode):
        args = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":  # the short form "X.Arn" is the long form ["X", "Arn"]
            args = str(args).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        args = loader.construct_sequence(node, deep=True)
    else:
        args = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return Intrinsic(tag_suffix, args)


_CfnLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: Path | str | None = None) -> Template:
    """template.yaml (or ``path``) as plain data, intrinsics as :class:`Intrinsic`."""
    with open(path or TEMPLATE_PATH, encoding="utf-8") as f:
        loaded = yaml.load(f, Loader=_CfnLoader)  # noqa: S506 (a SafeLoader subclass)
    if not isinstance(loaded, dict) or not isinstance(loaded.get("Resources"), dict):
        raise TemplateError(f"{path or TEMPLATE_PATH} has no Resources mapping")
    return loaded


def as_intrinsic(value: Any) -> Intrinsic | None:
    """``!Ref X`` and its long form ``{"Ref": "X"}`` / ``{"Fn::GetAtt": ...}`` alike."""
    if isinstance(value, Intrinsic):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((key, args),) = value.items()
        if key == "Ref" or key.startswith("Fn::"):
            name = key.removeprefix("Fn::")
            if name == "GetAtt" and isinstance(args, str):
                args = args.split(".", 1)
            return Intrinsic(name, args)
    return None


def _resources_of_type(template: Template, resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource.get("Properties") or {}
        for logical_id, resource in template["Resources"].items()
        if resource.get("Type") == resource_type
    }


def _reject_unknown(logical_id: str, props: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(props) - known)
    if unknown:
        raise TemplateError(
            f"{logical_id}: devstack/template.py does not translate {', '.join(unknown)}; "
            "teach it, or the local stack would silently differ from the deployed one"
        )


# --- tables ---------------------------------------------------------------------------

#: Properties with no local effect (durability, encryption, tags, capacity: every local
#: table is on-demand, which is what the template asks for anyway).
_TABLE_IGNORED = {
    "BillingMode",
    "ContributorInsightsSpecification",
    "DeletionProtectionEnabled",
    "KinesisStreamSpecification",
    "PointInTimeRecoverySpecification",
    "ProvisionedThroughput",
    "SSESpecification",
    "TableClass",
    "TableName",
    "Tags",
}
_TABLE_TRANSLATED = {
    "AttributeDefinitions",
    "KeySchema",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "StreamSpecification",
    "TimeToLiveSpecification",
}


@dataclass(frozen=True)
class TableDefinition:
    """One template table: ``create_table`` kwargs minus the name, and its TTL attribute."""

    logical_id: str
    create_kwargs: dict[str, Any]
    ttl_attribute: str | None = None

    def physical_name(self, prefix: str) -> str:
        return f"{prefix}-{self.logical_id}"


def _index(index: dict[str, Any]) -> dict[str, Any]:
    # ProvisionedThroughput and ContributorInsights do not apply to on-demand tables.
    return {k: index[k] for k in ("IndexName", "KeySchema", "Projection") if k in index}


def table_definitions(template: Template) -> dict[str, TableDefinition]:
    """Every ``AWS::DynamoDB::Table`` of the template, by logical id."""
    tables: dict[str, TableDefinition] = {}
    for logical_id, props in _resources_of_type(template, TABLE_TYPE).items():
        _reject_unknown(logical_id, props, _TABLE_IGNORED | _TABLE_TRANSLATED)
        kwargs: dict[str, Any] = {
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": "PAY_PER_REQUEST",
        }
        for prop in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if props.get(prop):
                kwargs[prop] = [_index(i) for i in props[prop]]
        if "StreamSpecification" in props:
            kwargs["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": props["StreamSpecification"]["StreamViewType"],
            }
        ttl = props.get("TimeToLiveSpecification") or {}
        enabled = ttl.get("Enabled") in (True, "true", "True")
        tables[logical_id] = TableDefinition(logical_id, kwargs, ttl["AttributeName"] if enabled else None)
    return tables


# --- queues ---------------------------------------------------------------------------

#: CloudFormation property -> SQS attribute, for values passed through as strings.
_QUEUE_ATTRIBUTES = {
    "ContentBasedDeduplication": "ContentBasedDeduplication",
    "DeduplicationScope": "DeduplicationScope",
    "DelaySeconds": "DelaySeconds",
    "FifoQueue": "FifoQueue",
    "FifoThroughputLimit": "FifoThroughputLimit",
    "MaximumMessageSize": "MaximumMessageSize",
    "MessageRetentionPeriod": "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds": "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout": "VisibilityTimeout",
}
#: Encryption has no local meaning; the name is replaced by a prefixed one.
_QUEUE_IGNORED = {"KmsDataKeyReusePeriodSeconds", "KmsMasterKeyId", "QueueName", "SqsManagedSseEnabled", "Tags"}
_QUEUE_POLICIES = {"RedrivePolicy", "RedriveAllowPolicy"}


@dataclass(frozen=True)
class QueueDefinition:
    """One template queue: ``create_queue`` attributes, ARNs still as logical ids.

    ``policies`` hold RedrivePolicy / RedriveAllowPolicy as dicts whose ARNs may be
    :class:`Intrinsic` ``GetAtt X.Arn``; :meth:`attributes` resolves them.
    """

    logical_id: str
    plain_attributes: dict[str, str]
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def fifo(self) -> bool:
        return self.plain_attributes.get("FifoQueue") == "true"

    @property
    def depends_on(self) -> set[str]:
        """Logical ids of the queues whose ARNs this queue's policies name."""
        return {ref for policy in self.policies.values() for ref in _queue_refs(policy)}

    def physical_name(self, prefix: str) -> str:
        return f"{prefix}-{self.logical_id}" + (".fifo" if self.fifo else "")

    def attributes(self, arns: dict[str, str]) -> dict[str, str]:
        """The ``create_queue`` attributes, with logical ids resolved through ``arns``."""
        resolved = dict(self.plain_attributes)
        for name, policy in self.policies.items():
            resolved[name] = json.dumps(_resolve_arns(policy, arns, self.logical_id))
        return resolved


def _str(value: Any) -> str:
    # YAML reads `true` as a bool; SQS wants "true".
    return str(value).lower() if isinstance(value, bool) else str(value)


def _arn_target(value: Any) -> str | None:
    ref = as_intrinsic(value)
    if ref is not None and ref.fn == "GetAtt" and list(ref.args)[1:] == ["Arn"]:
        return str(ref.args[0])
    return None


def _queue_refs(value: Any) -> list[str]:
    if (target := _arn_target(value)) is not None:
        return [target]
    if isinstance(value, dict):
        return [r for v in value.values() for r in _queue_refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _queue_refs(v)]
    return []


def _resolve_arns(value: Any, arns: dict[str, str], owner: str) -> Any:
    if (target := _arn_target(value)) is not None:
        if target not in arns:
            raise TemplateError(f"{owner}: !GetAtt {target}.Arn names no queue of the template")
        return arns[target]
    if as_intrinsic(value) is not None:
        raise TemplateError(f"{owner}: cannot resolve {value!r} locally")
    if isinstance(value, dict):
        return {k: _resolve_arns(v, arns, owner) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_arns(v, arns, owner) for v in value]
    return value


def queue_definitions(template: Template) -> dict[str, QueueDefinition]:
    """Every ``AWS::SQS::Queue`` of the template, by logical id."""
    queues: dict[str, QueueDefinition] = {}
    for logical_id, props in _resources_of_type(template, QUEUE_TYPE).items():
        _reject_unknown(logical_id, props, set(_QUEUE_ATTRIBUTES) | _QUEUE_IGNORED | _QUEUE_POLICIES)
        plain = {_QUEUE_ATTRIBUTES[k]: _str(v) for k, v in props.items() if k in _QUEUE_ATTRIBUTES}
        for k, v in plain.items():
            if as_intrinsic(props[k]) is not None:
                raise TemplateError(f"{logical_id}.{k}: intrinsic {v} cannot be resolved locally")
        policies = {k: dict(props[k]) for k in _QUEUE_POLICIES if k in props}
        queues[logical_id] = QueueDefinition(logical_id, plain, policies)
    return queues


def _creation_order(queues: dict[str, QueueDefinition]) -> list[QueueDefinition]:
    """Dead-letter targets before the queues that name them."""
    ordered: list[QueueDefinition] = []
    placed: set[str] = set()
    pending = dict(queues)
    while pending:
        ready = [q for q in pending.values() if q.depends_on <= placed | (q.depends_on - set(queues))]
        if not ready:
            raise TemplateError(f"queues reference each other in a cycle: {', '.join(sorted(pending))}")
        for q in ready:
            ordered.append(q)
            placed.add(q.logical_id)
            del pending[q.logical_id]
    return ordered


# --- creation -------------------------------------------------------------------------


def check_resource_maps(template: Template) -> None:
    """Fail unless TABLE_ENV / QUEUE_ENV name exactly the template's tables and queues."""
    problems = []
    for kind, declared, mapped in (
        ("table", set(table_definitions(template)), set(TABLE_ENV)),
        ("queue", set(queue_definitions(template)), set(QUEUE_ENV) | set(DESTINATION_QUEUE_ENV)),
        ("event bus", set(_resources_of_type(template, BUS_TYPE)), set(BUS_ENV)),
    ):
        if extra := declared - mapped:
            problems.append(f"{kind}s in template.yaml but not in evreserve.resources: {sorted(extra)}")
        if missing := mapped - declared:
            problems.append(f"{kind}s in evreserve.resources but not in template.yaml: {sorted(missing)}")
    if problems:
        raise TemplateError("; ".join(problems))


def _wait_active(dynamodb: DynamoDBClient, table: str, timeout: float = 10.0) -> None:
    # DynamoDB Local usually answers ACTIVE at once; the boto3 waiter would sleep 20 s
    # before its second look if it were not.
    deadline = time.monotonic() + timeout
    while dynamodb.describe_table(TableName=table)["Table"]["TableStatus"] != "ACTIVE":
        if time.monotonic() > deadline:
            raise TimeoutError(f"table {table} not ACTIVE after {timeout} s")
        time.sleep(0.05)


def create_tables(dynamodb: DynamoDBClient, prefix: str, template: Template) -> dict[str, str]:
    """Create the template's tables; returns env var name -> physical table name."""
    names: dict[str, str] = {}
    for logical_id, table in table_definitions(template).items():
        name = table.physical_name(prefix)
        dynamodb.create_table(TableName=name, **table.create_kwargs)
        _wait_active(dynamodb, name)
        if table.ttl_attribute is not None:
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": table.ttl_attribute, "Enabled": True},
            )
        names[TABLE_ENV[logical_id]] = name
    return names


def create_queues(sqs: SQSClient, prefix: str, template: Template) -> dict[str, str]:
    """Create the template's queues; returns env var name -> queue URL."""
    urls: dict[str, str] = {}
    arns: dict[str, str] = {}
    for queue in _creation_order(queue_definitions(template)):
        # The stubs type the keys as a Literal of attribute names; the template's are
        # checked against the same list above.
        attributes: Any = queue.attributes(arns)
        url = sqs.create_queue(QueueName=queue.physical_name(prefix), Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        arns[queue.logical_id] = arn
        urls[{**QUEUE_ENV, **DESTINATION_QUEUE_ENV}[queue.logical_id]] = url
    return urls


_PREFIX = re.compile(r"[A-Za-z0-9_-]{1,40}")


BUS_TYPE = "AWS::Events::EventBus"


def create_event_buses(events_client: Any, prefix: str, template: Template) -> dict[str, str]:
    """Create the template's event buses; returns env var name -> bus name."""
    names: dict[str, str] = {}
    for logical_id in _resources_of_type(template, BUS_TYPE):
        name = f"{prefix}-{logical_id}"
        events_client.create_event_bus(Name=name)
        names[BUS_ENV[logical_id]] = name
    return names


def create_resources(
    dynamodb_client: DynamoDBClient,
    sqs_client: SQSClient,
    prefix: str,
    template: Template | None = None,
    events_client: Any = None,
) -> dict[str, str]:
    """Create every table and queue of the template, names starting with ``prefix``.

    Returns env var name (from TABLE_ENV / QUEUE_ENV) -> physical table name or queue URL.
    """
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"prefix {prefix!r}: use 1-40 letters, digits, '-' or '_' (valid in both names)")
    template = template if template is not None else load_template()
    check_resource_maps(template)
    created = create_tables(dynamodb_client, prefix, template) | create_queues(sqs_client, prefix, template)
    if events_client is not None:
        created |= create_event_buses(events_client, prefix, template)
    return created
