"""template.yaml against the code: resources, variables, permissions, handlers, the gateway fleet.

The code reaches tables and queues through environment variables read by typed settings
(``evreserve.settings``, ``evreserve_lambda.settings``, ``evreserve_gateway.settings``);
``evreserve.resources`` maps the template's logical ids to those variables. These tests
check the template declares and passes every one of them, grants what the code calls
and no more, and that the gateway's deployment fits its lifecycle (drain, health check).
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from devstack.template import Intrinsic, check_resource_maps, load_template
from evreserve.resources import QUEUE_ENV, TABLE_ENV, TTL_ATTRIBUTE
from evreserve.settings import ChannelSettings, EnvSettings, variables
from evreserve_gateway.settings import GatewaySettings
from evreserve_lambda.settings import DelivererSettings, FunctionSettings, PublisherSettings

REPO = Path(__file__).resolve().parents[2]
FUNCTION = "AWS::Serverless::Function"
GATEWAY_CONTAINER = "gateway"
#: The name pattern of the per-instance queues, as the template writes it (before !Sub).
GATEWAY_QUEUE_PREFIX_SUB = "${Stage}-evreserve-gw-"
#: Variables set for the runtime, not read by our settings classes.
PLATFORM_VARIABLES = {
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "LOG_LEVEL",
    "PYDANTIC_DISABLE_PLUGINS",
}
#: Read by botocore; empty when deployed (sam local's env.json sets them: devstack/invoke.py).
ENDPOINT_VARIABLES = {"AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_EVENTBRIDGE"}


@cache
def template() -> dict[str, Any]:
    return load_template()


def resources(kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template()["Resources"].items() if r.get("Type") == kind}


def props(logical_id: str) -> dict[str, Any]:
    return template()["Resources"][logical_id].get("Properties") or {}


def is_ref(value: Any, target: str) -> bool:
    return isinstance(value, Intrinsic) and value.fn == "Ref" and value.args == target


# -- settings: which variables the code reads ------------------------------------------


def env_names(settings: type[EnvSettings]) -> dict[str, bool]:
    """Every environment variable ``settings`` reads -> whether it is required."""
    names: dict[str, bool] = {}
    for name, field in settings.model_fields.items():
        for variable in variables(name, field):
            names[variable] = field.is_required()
    return names


def function_environment(logical_id: str) -> dict[str, Any]:
    """A function's variables as deployed: Globals merged with its own (SAM's rule)."""
    merged = dict(template()["Globals"]["Function"]["Environment"]["Variables"])
    merged.update(((props(logical_id).get("Environment") or {}).get("Variables")) or {})
    return merged


def gateway_container() -> dict[str, Any]:
    (task,) = resources("AWS::ECS::TaskDefinition").values()
    containers = {c["Name"]: c for c in task["Properties"]["ContainerDefinitions"]}
    return containers[GATEWAY_CONTAINER]


def gateway_environment() -> dict[str, Any]:
    return {e["Name"]: e["Value"] for e in gateway_container()["Environment"]}


#: Functions whose settings are not the API functions' own.
SETTINGS_OF: dict[str, type[EnvSettings]] = {
    "PublisherFunction": PublisherSettings,
    "DelivererFunction": DelivererSettings,
}


def environments() -> Iterator[tuple[str, type[EnvSettings], dict[str, Any]]]:
    for logical_id in resources(FUNCTION):
        yield logical_id, SETTINGS_OF.get(logical_id, FunctionSettings), function_environment(logical_id)
    yield "GatewayTaskDefinition", GatewaySettings, gateway_environment()


ENVIRONMENTS = [pytest.param(s, e, id=name) for name, s, e in environments()]


def test_resource_maps_name_exactly_the_templates_tables_and_queues():
    """TABLE_ENV / QUEUE_ENV and the template agree, as the local stack requires."""
    check_resource_maps(template())
    assert set(TABLE_ENV) <= set(resources("AWS::DynamoDB::Table"))
    assert set(QUEUE_ENV) <= set(resources("AWS::SQS::Queue"))


@pytest.mark.parametrize(("settings", "environment"), ENVIRONMENTS)
def test_every_required_variable_is_passed(settings, environment):
    """Each function and the gateway task get every variable their settings require."""
    required = {name for name, needed in env_names(settings).items() if needed}
    assert required <= set(environment), sorted(required - set(environment))


@pytest.mark.parametrize(("settings", "environment"), ENVIRONMENTS)
def test_every_passed_variable_is_read(settings, environment):
    """No variable is set that nothing reads: a typo would silently fall back to a default."""
    unread = set(environment) - set(env_names(settings)) - PLATFORM_VARIABLES - ENDPOINT_VARIABLES
    assert not unread, sorted(unread)


@pytest.mark.parametrize(("settings", "environment"), ENVIRONMENTS)
def test_table_variables_name_their_tables(settings, environment):
    """Each table variable the settings read is the !Ref of the very table TABLE_ENV maps it to."""
    read = env_names(settings)
    for logical_id, variable in TABLE_ENV.items():
        if variable in read:
            assert variable in environment, f"{variable} is read but not passed"
            assert is_ref(environment[variable], logical_id), (variable, environment[variable])


def test_every_table_and_queue_is_read_by_some_entrypoint():
    """No table or queue is declared that neither the functions nor the gateway read."""
    read = {
        name for settings in (FunctionSettings, GatewaySettings, *SETTINGS_OF.values()) for name in env_names(settings)
    }
    assert set(TABLE_ENV.values()) | set(QUEUE_ENV.values()) <= read


def test_gateway_gets_the_dead_letter_queue_and_the_functions_queue_prefix():
    """The task's COMMAND_DLQ_URL is the template's DLQ; its queue prefix is the one functions send to."""
    environment = gateway_environment()
    read = env_names(GatewaySettings)
    for logical_id, variable in QUEUE_ENV.items():
        if variable in read:
            assert is_ref(environment[variable], logical_id)  # Ref of an SQS queue is its URL
    prefixes = {str(env["GATEWAY_QUEUE_PREFIX"].args) for _, _, env in environments()}
    assert prefixes == {GATEWAY_QUEUE_PREFIX_SUB}


def _branches(value: Any) -> tuple[Any, Any]:
    """(with profile 3, without) of an ``!If [HasProfile3, ...]``."""
    assert isinstance(value, Intrinsic) and value.fn in ("If", "Fn::If") and value.args[0] == "HasProfile3"
    return value.args[1], value.args[2]


def test_gateway_listens_where_the_load_balancer_sends():
    """GATEWAY_HOST binds every interface; GATEWAY_PORT = container port = target group port; with
    profile 3's certificates, GATEWAY_MTLS_PORT likewise for its TCP listener on 8443."""
    environment = gateway_environment()
    assert environment["GATEWAY_HOST"] == "0.0.0.0"
    with_profile3, without = _branches(gateway_container()["PortMappings"])
    (mapping,) = without
    assert int(environment["GATEWAY_PORT"]) == mapping["ContainerPort"] == props("GatewayTargetGroup")["Port"]
    assert with_profile3[0] == mapping
    mtls = with_profile3[1]["ContainerPort"]
    assert _branches(environment["GATEWAY_MTLS_PORT"]) == (str(mtls), "")
    assert mtls == props("Profile3TargetGroup")["Port"]
    listener = props("Profile3Listener")
    assert (listener["Protocol"], listener["Port"]) == ("TCP", 8443)
    balancers_3, balancers = _branches(props("GatewayService")["LoadBalancers"])
    assert [(b["ContainerName"], b["ContainerPort"]) for b in balancers] == [
        (GATEWAY_CONTAINER, mapping["ContainerPort"])
    ]
    assert [b["ContainerPort"] for b in balancers_3] == [mapping["ContainerPort"], mtls]
    secrets, _ = _branches(gateway_container()["Secrets"])
    assert {s["Name"] for s in secrets} == {
        "GATEWAY_MTLS_CERT_PEM",
        "GATEWAY_MTLS_KEY_PEM",
        "GATEWAY_TLS_CLIENT_CA_PEM",
    }


# -- permissions -----------------------------------------------------------------------

#: What each principal's code calls, read from the stores it uses (see each Sid's comment
#: in template.yaml). DynamoDB authorizes TransactWriteItems item by item, as Put /
#: Update / Delete / ConditionCheck.
QUEUES = "queues"
NEEDS: dict[str, set[tuple[str, str]]] = {
    # Serves what its layer holds: no AWS access at all.
    "DocsFunction": set(),
    "AuthorizerFunction": {("dynamodb:GetItem", "RegistryTable")},
    "ReservationsFunction": {
        ("dynamodb:GetItem", "RegistryTable"),
        *{
            (f"dynamodb:{a}", t)
            for a in ("GetItem", "PutItem", "UpdateItem")
            for t in ("ReservationsTable", "CommandsTable")
        },
        ("dynamodb:Query", "ReservationsTable"),
        ("dynamodb:Query", "ReservationsTable/index"),
        ("sqs:SendMessage", QUEUES),
    },
    "ChargersFunction": {
        *{(f"dynamodb:{a}", "RegistryTable") for a in ("GetItem", "PutItem", "UpdateItem", "DeleteItem")},
        ("dynamodb:Query", "RegistryTable/index"),  # every registry list is on gsi1
        ("sqs:SendMessage", QUEUES),  # closing a live session after a password change or deletion
    },
    "AdminFunction": {
        *{(f"dynamodb:{a}", "RegistryTable") for a in ("GetItem", "PutItem", "UpdateItem", "DeleteItem")},
        ("dynamodb:Query", "RegistryTable/index"),  # every registry list is on gsi1
    },
    # The active ones by expiry (index), each ended with one conditional UpdateItem.
    "SweeperFunction": {("dynamodb:Query", "ReservationsTable/index"), ("dynamodb:UpdateItem", "ReservationsTable")},
    # Stream in (granted by SAM for the event source), events out: to the bus, and one
    # delivery per webhook of the account (its webhooks read with one Query).
    "PublisherFunction": {
        ("events:PutEvents", "EventBus"),
        ("dynamodb:Query", "WebhooksTable"),
        ("sqs:SendMessage", "WebhookDeliveryQueue"),
    },
    # Queue in (granted by SAM for the event source): the webhook (GetItem), the attempt
    # logged (PutItem), a retry queued again (SendMessage).
    "DelivererFunction": {
        ("dynamodb:GetItem", "WebhooksTable"),
        ("dynamodb:PutItem", "WebhooksTable"),
        ("sqs:SendMessage", "WebhookDeliveryQueue"),
    },
    "WebhooksFunction": {
        *{(f"dynamodb:{a}", "WebhooksTable") for a in ("GetItem", "PutItem", "DeleteItem", "Query")},
    },
    # Record and number pointer in one transaction (Put / Update / Delete items), numbers
    # from a counter (UpdateItem), reads by key, the account's list (Query on the table).
    "AccessIdsFunction": {
        *{(f"dynamodb:{a}", "RegistryTable") for a in ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query")},
    },
    # Read-only: the charger (account and scope), then its logged batches.
    "MessagesFunction": {("dynamodb:GetItem", "RegistryTable"), ("dynamodb:Query", "OcppMessagesTable")},
    "GatewayTaskRole": {
        ("dynamodb:GetItem", "RegistryTable"),
        ("dynamodb:UpdateItem", "RegistryTable"),
        # Instance leases: renewed (PutItem), listed (gsi1), removed once lapsed (DeleteItem);
        # a dead instance's chargers found on index byInstance.
        ("dynamodb:PutItem", "RegistryTable"),
        ("dynamodb:DeleteItem", "RegistryTable"),
        ("dynamodb:Query", "RegistryTable/index"),
        ("dynamodb:Query", "ReservationsTable/index"),
        ("dynamodb:UpdateItem", "ReservationsTable"),
        # Before undoing a late-accepted ReserveNow: whose is the reservation now?
        ("dynamodb:GetItem", "ReservationsTable"),
        ("dynamodb:GetItem", "CommandsTable"),
        ("dynamodb:UpdateItem", "CommandsTable"),
        # The message log's batches, written and never read back.
        ("dynamodb:BatchWriteItem", "OcppMessagesTable"),
        *{
            (f"sqs:{a}", QUEUES)
            for a in (
                "CreateQueue",
                "DeleteQueue",
                "GetQueueUrl",
                "GetQueueAttributes",
                "SetQueueAttributes",
                "ReceiveMessage",
                "ChangeMessageVisibility",
                "SendMessage",
            )
        },
        ("sqs:GetQueueAttributes", "CommandDeadLetterQueue"),
        *{(f"sqs:{a}", "OutcomeSpoolQueue") for a in ("SendMessage", "ReceiveMessage", "DeleteMessage")},
    },
}

# The API functions count requests per key (one conditional UpdateItem) when their
# settings read a rate-limit table: a requirement that follows the code, not the template.
if "RATE_LIMIT_TABLE" in env_names(FunctionSettings):
    for _principal in (
        "ReservationsFunction",
        "ChargersFunction",
        "MessagesFunction",
        "AdminFunction",
        "WebhooksFunction",
        "AccessIdsFunction",
    ):
        NEEDS[_principal].add(("dynamodb:UpdateItem", "RateLimitTable"))


def resource_target(resource: Any) -> str:
    """A statement's Resource as a logical id (``X``, ``X/index``) or ``queues``; fails on anything wider."""
    if isinstance(resource, Intrinsic) and resource.fn == "GetAtt" and list(resource.args)[1:] == ["Arn"]:
        return str(resource.args[0])
    if isinstance(resource, Intrinsic) and resource.fn == "Sub" and isinstance(resource.args, str):
        text = resource.args
        if match := re.fullmatch(r"\$\{(\w+)\.Arn\}/index/\*", text):
            return f"{match.group(1)}/index"
        if text == "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:" + GATEWAY_QUEUE_PREFIX_SUB + "*":
            return QUEUES
    raise AssertionError(f"unexpected Resource {resource!r}: not one table, index set or the gateway queues")


def statements(principal: str) -> list[dict[str, Any]]:
    """Every policy statement of a function (inline documents only) or of a role."""
    resource = template()["Resources"][principal]
    if resource["Type"] == FUNCTION:
        documents = props(principal).get("Policies") or []
        for document in documents:
            # SAM policy templates (DynamoDBCrudPolicy...) grant Scan, batch and delete
            # operations the code does not use: least privilege means statements.
            assert isinstance(document, dict) and "Statement" in document, f"{principal}: {document!r}"
    else:
        documents = [p["PolicyDocument"] for p in resource["Properties"].get("Policies") or []]
    return [s for d in documents for s in d["Statement"]]


def grants(principal: str) -> set[tuple[str, str]]:
    granted = set()
    for statement in statements(principal):
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for action in actions:
            assert "*" not in action, f"{principal}: wildcard action {action}"
            granted |= {(action, resource_target(r)) for r in targets}
    return granted


@pytest.mark.parametrize("principal", sorted(NEEDS))
def test_each_principal_may_do_what_its_code_calls(principal):
    """Every action the code of a function / the gateway calls is granted on its resource."""
    assert NEEDS[principal] <= grants(principal), sorted(NEEDS[principal] - grants(principal))


@pytest.mark.parametrize("principal", sorted(NEEDS))
def test_each_principal_may_do_nothing_more(principal):
    """Least privilege: nothing is granted beyond what the code calls (no Scan, no wildcard)."""
    assert grants(principal) <= NEEDS[principal], sorted(grants(principal) - NEEDS[principal])


def test_the_authorizer_can_only_read_the_registry():
    """The function in front of every request cannot write anything, nor read past the registry."""
    assert {target for _, target in grants("AuthorizerFunction")} == {"RegistryTable"}
    assert {action for action, _ in grants("AuthorizerFunction")} <= {"dynamodb:GetItem", "dynamodb:Query"}


def test_every_function_is_in_the_permission_table():
    """A new function needs its row in NEEDS, i.e. someone decided what it may do."""
    assert set(resources(FUNCTION)) | {"GatewayTaskRole"} == set(NEEDS)
    assert props("GatewayTaskDefinition")["TaskRoleArn"] == Intrinsic("GetAtt", ["GatewayTaskRole", "Arn"])


#: The AWS operations the code calls -> the IAM actions they need. When the code starts
#: calling another operation, this test fails until NEEDS (and the template) cover it.
OPERATION_ACTIONS = {
    "dynamodb.get_item": {"dynamodb:GetItem"},
    "dynamodb.put_item": {"dynamodb:PutItem"},
    "dynamodb.update_item": {"dynamodb:UpdateItem"},
    "dynamodb.delete_item": {"dynamodb:DeleteItem"},
    "dynamodb.query": {"dynamodb:Query"},
    "dynamodb.transact_write_items": {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"},
    "dynamodb.batch_write_item": {"dynamodb:BatchWriteItem"},  # the message log
    "sqs.send_message": {"sqs:SendMessage"},
    "sqs.send_message_batch": {"sqs:SendMessage"},  # webhook deliveries, from the publisher
    "sqs.receive_message": {"sqs:ReceiveMessage"},
    "sqs.change_message_visibility": {"sqs:ChangeMessageVisibility"},  # a gateway's retry
    "sqs.delete_message": {"sqs:DeleteMessage"},  # the outcome spool, one stored outcome at a time
    "sqs.create_queue": {"sqs:CreateQueue"},
    "sqs.get_queue_url": {"sqs:GetQueueUrl"},
    "sqs.get_queue_attributes": {"sqs:GetQueueAttributes"},
    "sqs.set_queue_attributes": {"sqs:SetQueueAttributes"},
    "sqs.delete_queue": {"sqs:DeleteQueue"},
}


def called_operations() -> set[str]:
    """``service.operation`` for every DynamoDB / SQS client method named in the deployed code."""
    session = botocore.session.get_session()
    methods: dict[str, str] = {}
    for service in ("dynamodb", "sqs"):
        model = session.get_service_model(service)
        for operation in model.operation_names:
            snake = botocore.xform_name(operation)
            methods.setdefault(snake, f"{service}.{snake}")
    found = set()
    for root in (REPO / "layers", REPO / "gateway" / "evreserve_gateway", REPO / "functions"):
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in methods:
                    found.add(methods[node.func.attr])
    return found


def test_every_aws_operation_the_code_calls_is_accounted_for():
    """The list of operations above is the code's: a new call must be reviewed for IAM."""
    assert called_operations() == set(OPERATION_ACTIONS)
    granted = {action for principal in NEEDS for action, _ in grants(principal)}
    # Every non-transactional action is granted to someone; transactions need any one of theirs.
    for operation, actions in OPERATION_ACTIONS.items():
        assert actions & granted, operation


# -- functions, layer, API -------------------------------------------------------------


@pytest.mark.parametrize("logical_id", sorted(resources(FUNCTION)))
def test_handler_names_a_callable_in_an_existing_module(logical_id):
    """Handler ``module.name`` is a file under CodeUri that defines ``name`` at top level."""
    module, _, name = props(logical_id)["Handler"].rpartition(".")
    path = REPO / props(logical_id)["CodeUri"] / f"{module.replace('.', '/')}.py"
    assert path.is_file(), path
    tree = ast.parse(path.read_text(encoding="utf-8"))
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    for node in tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        defined |= {t.id for t in targets if isinstance(t, ast.Name)}
    assert name in defined, f"{path} defines no {name}"


def api_events() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (logical_id, event_name, event["Properties"])
        for logical_id in resources(FUNCTION)
        for event_name, event in (props(logical_id).get("Events") or {}).items()
        if event["Type"] == "Api"
    ]


def test_every_api_route_is_declared_once_on_the_api():
    """(method, path) pairs are unique across functions and all belong to the one Api."""
    routes = [(p["Method"].upper(), p["Path"]) for _, _, p in api_events()]
    assert len(routes) == len(set(routes)), sorted(r for r in routes if routes.count(r) > 1)
    assert all(is_ref(p["RestApiId"], "Api") for _, _, p in api_events())


def test_the_layer_is_the_core_built_for_the_functions_runtime():
    """ContentUri layers/core, built by SAM for python3.12 / arm64, the functions' own."""
    layer = template()["Resources"]["CoreLayer"]
    function_globals = template()["Globals"]["Function"]
    assert layer["Properties"]["ContentUri"] == "layers/core"
    assert (REPO / "layers" / "core" / "requirements.txt").is_file()  # what `sam build` installs
    assert layer["Metadata"] == {"BuildMethod": function_globals["Runtime"], "BuildArchitecture": "arm64"}
    assert function_globals["Architectures"] == ["arm64"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert function_globals["Runtime"] in layer["Properties"]["CompatibleRuntimes"]
    assert is_ref(function_globals["Layers"][0], "CoreLayer")


def test_the_lambda_glue_is_a_layer_of_its_own():
    """evreserve_lambda (Powertools, the wire shapes) ships to the functions only, not in the gateway image."""
    layer = template()["Resources"]["LambdaLayer"]
    function_globals = template()["Globals"]["Function"]
    assert layer["Properties"]["ContentUri"] == "layers/lambda"
    assert (REPO / "layers" / "lambda" / "requirements.txt").is_file()
    assert layer["Metadata"] == {"BuildMethod": function_globals["Runtime"], "BuildArchitecture": "arm64"}
    assert is_ref(function_globals["Layers"][1], "LambdaLayer")
    assert not (REPO / "layers" / "core" / "evreserve_lambda").exists()
    core_requirements = (REPO / "layers" / "core" / "requirements.txt").read_text(encoding="utf-8")
    assert "powertools" not in core_requirements


def test_tracing_is_on_for_functions_and_api():
    """X-Ray: every function (Globals) and the API stage."""
    assert template()["Globals"]["Function"]["Tracing"] == "Active"
    assert props("Api")["TracingEnabled"] is True


def test_every_log_group_has_a_retention_and_every_writer_its_group():
    """No log group is left to be created implicitly (without retention, kept forever)."""
    groups = resources("AWS::Logs::LogGroup")
    assert all("RetentionInDays" in g["Properties"] for g in groups.values())
    for logical_id in resources(FUNCTION):
        target = props(logical_id)["LoggingConfig"]["LogGroup"]
        assert isinstance(target, Intrinsic) and target.args in groups
    options = gateway_container()["LogConfiguration"]["Options"]
    assert options["awslogs-group"].args in groups


# -- tables and queues -----------------------------------------------------------------


def test_tables_are_on_demand_with_ttl_and_recovery_where_needed():
    """On-demand everywhere; TTL on the records that expire; PITR on the registry and reservations."""
    for logical_id in TABLE_ENV:
        assert props(logical_id)["BillingMode"] == "PAY_PER_REQUEST"
    for logical_id in ("ReservationsTable", "CommandsTable"):
        assert props(logical_id)["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    for logical_id in ("RegistryTable", "ReservationsTable"):
        assert props(logical_id)["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
        assert template()["Resources"][logical_id]["DeletionPolicy"] == "Retain"


def test_the_dead_letter_queue_has_an_alarm_on_any_message():
    """A message in the DLQ alarms at once: it is a bug or a broken deployment, never load."""
    alarms = [
        a["Properties"]
        for a in resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"]["Namespace"] == "AWS/SQS"
        and any(
            d["Value"] == Intrinsic("GetAtt", ["CommandDeadLetterQueue", "QueueName"])
            for d in a["Properties"]["Dimensions"]
        )
    ]
    assert len(alarms) == 1
    (alarm,) = alarms
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["AlarmActions"]


# -- the gateway fleet -----------------------------------------------------------------


def test_gateway_tasks_are_arm64_fargate():
    """The image is built for arm64, so must the task be."""
    task = props("GatewayTaskDefinition")
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    assert task["RuntimePlatform"]["CpuArchitecture"] == "ARM64"
    assert task["NetworkMode"] == "awsvpc"
    assert props("GatewayService")["LaunchType"] == "FARGATE"


def test_load_balancer_terminates_tls_with_the_certificate_parameter():
    """wss:// on 443 with the certificate given as a parameter, TLS 1.2+ only."""
    listener = props("GatewayListener")
    assert (listener["Protocol"], listener["Port"]) == ("TLS", 443)
    assert [c["CertificateArn"] for c in listener["Certificates"]] == [Intrinsic("Ref", "CertificateArn")]
    assert "TLS13-1-2" in listener["SslPolicy"]
    assert props("GatewayLoadBalancer")["Type"] == "network"


def test_health_check_is_the_gateways_health_endpoint():
    """The NLB asks GET /health on the charger port and wants 200 (503 once draining)."""
    group = props("GatewayTargetGroup")
    assert (group["HealthCheckProtocol"], group["HealthCheckPath"], group["HealthCheckPort"]) == (
        "HTTP",
        "/health",
        "traffic-port",
    )
    assert group["Matcher"] == {"HttpCode": "200"}
    command = " ".join(gateway_container()["HealthCheck"]["Command"])
    assert "/health" in command and "GATEWAY_PORT" in command


def target_group_attributes() -> dict[str, str]:
    return {a["Key"]: a["Value"] for a in props("GatewayTargetGroup")["TargetGroupAttributes"]}


def test_stop_timeout_covers_the_drain_and_the_drain_covers_a_command():
    """SIGTERM -> commands in flight finish (drain >= command timeout + grace) -> 1012 -> exit before SIGKILL."""
    channel = ChannelSettings()
    drain_s = float(gateway_environment()["GATEWAY_DRAIN_TIMEOUT_S"])
    stop_timeout_s = gateway_container()["StopTimeout"]
    assert drain_s >= channel.command_timeout_s + channel.command_grace_s
    # Room after the drain for closing sockets, final outcomes, disconnection writes, queue deletion.
    assert stop_timeout_s >= drain_s + 30
    assert stop_timeout_s <= 120  # Fargate's maximum


#: One scrypt check (n=2**14, r=8) on one vCPU, with room: ~50 ms idle, ~90 ms on a busy machine.
SCRYPT_CHECK_S = 0.1


def test_a_full_handshake_gate_fits_its_time_budget():
    """In a storm after a restart every handshake needs scrypt (the cache is empty): the handshakes the gate lets
    in at once can all be checked within the handshake budget, so the excess is refused at the gate at once rather
    than timed out half-way."""
    environment = gateway_environment()
    max_handshakes = int(environment["GATEWAY_MAX_HANDSHAKES"])
    budget_s = float(environment["GATEWAY_HANDSHAKE_TIMEOUT_S"])
    vcpus = max(1.0, int(template()["Parameters"]["GatewayCpu"]["Default"]) / 1024)
    assert max_handshakes * SCRYPT_CHECK_S / vcpus <= 0.75 * budget_s


def test_deregistration_never_cuts_the_websockets():
    """The NLB stops new connections, keeps established ones; the gateway's 1012 closes them."""
    attributes = target_group_attributes()
    assert 30 <= int(attributes["deregistration_delay.timeout_seconds"]) <= 300
    assert attributes["deregistration_delay.connection_termination.enabled"] == "false"
    # The per-address login throttle needs the charger's address.
    assert attributes["preserve_client_ip.enabled"] == "true"
    deployment = props("GatewayService")["DeploymentConfiguration"]
    assert deployment["MinimumHealthyPercent"] == 100  # new tasks before old ones drain


def test_gateway_scales_on_connections_and_cpu():
    """Two target-tracking policies on the service: TLS connections per healthy task, and CPU."""
    policies = [p["Properties"] for p in resources("AWS::ApplicationAutoScaling::ScalingPolicy").values()]
    assert all(is_ref(p["ScalingTargetId"], "GatewayScalableTarget") for p in policies)
    configs = [p["TargetTrackingScalingPolicyConfiguration"] for p in policies]
    cpu = [c for c in configs if "PredefinedMetricSpecification" in c]
    assert cpu[0]["PredefinedMetricSpecification"]["PredefinedMetricType"] == "ECSServiceAverageCPUUtilization"
    (connections,) = [c for c in configs if "CustomizedMetricSpecification" in c]
    names = {
        m["MetricStat"]["Metric"]["MetricName"]
        for m in connections["CustomizedMetricSpecification"]["Metrics"]
        if "MetricStat" in m
    }
    assert names == {"ActiveFlowCount_TLS", "HealthyHostCount"}
    assert is_ref(connections["TargetValue"], "GatewayChargersPerTask")
    target = props("GatewayScalableTarget")
    assert is_ref(target["MinCapacity"], "GatewayMinCount") and is_ref(target["MaxCapacity"], "GatewayMaxCount")


def test_a_task_may_hold_the_chargers_it_is_scaled_for():
    """The file-descriptor limit is above the connections-per-task target (one socket per charger)."""
    (nofile,) = [u for u in gateway_container()["Ulimits"] if u["Name"] == "nofile"]
    target = template()["Parameters"]["GatewayChargersPerTask"]["Default"]
    assert nofile["SoftLimit"] >= 4 * target


def test_parameters_and_outputs_for_a_deployment():
    """Stage, certificate, image, network and sizes are parameters; the API URL and wss:// are outputs."""
    parameters = template()["Parameters"]
    for name in ("Stage", "CertificateArn", "GatewayImageUri", "VpcId", "GatewaySubnetIds", "LoadBalancerSubnetIds"):
        assert name in parameters
    for name in ("GatewayCpu", "GatewayMemory", "GatewayDesiredCount", "GatewayMinCount", "GatewayMaxCount"):
        assert name in parameters
    outputs = template()["Outputs"]
    assert outputs["ApiUrl"]["Value"].args.startswith("https://")
    assert outputs["GatewayUrl"]["Value"].args.startswith("wss://")
    assert is_ref(gateway_container()["Image"], "GatewayImageUri")


@pytest.mark.skipif(shutil.which("cfn-lint", path=str(REPO / ".venv" / "bin")) is None, reason="cfn-lint not installed")
def test_cfn_lint_is_clean():
    """cfn-lint passes with no suppressed rule (`make test` runs it too; here it guards pytest alone)."""
    text = (REPO / "template.yaml").read_text(encoding="utf-8")
    assert "cfn-lint" not in text.split("Resources:")[0], "template-wide rule suppressions"
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "cfn-lint"), str(REPO / "template.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_api_gateways_own_refusals_say_when_to_retry():
    """API Gateway's own 429 (stage throttling) and an authorizer that failed (DynamoDB down) carry
    Retry-After and the API's error body; the authorizer failure is 503 SERVICE_UNAVAILABLE, not 500."""
    responses = props("Api")["GatewayResponses"]
    for response_type, status, code in (
        ("THROTTLED", 429, "RATE_LIMITED"),
        ("AUTHORIZER_FAILURE", 503, "SERVICE_UNAVAILABLE"),
    ):
        response = responses[response_type]
        assert response["StatusCode"] == status
        retry_after = response["ResponseParameters"]["Headers"]["Retry-After"]
        assert retry_after.startswith("'") and int(retry_after.strip("'")) > 0
        assert json.loads(response["ResponseTemplates"]["application/json"])["code"] == code


def test_one_tenant_cannot_take_the_whole_service():
    """Stage throttling before any function runs, a reserved concurrency for the function that waits on
    chargers, an account-wide request limit, and the per-address login throttle on behind the NLB."""
    (stage,) = props("Api")["MethodSettings"]
    assert (stage["ResourcePath"], stage["HttpMethod"]) == ("/*", "*")
    assert is_ref(stage["ThrottlingRateLimit"], "ApiThrottleRatePerSecond")
    assert is_ref(stage["ThrottlingBurstLimit"], "ApiThrottleBurst")
    assert is_ref(props("ReservationsFunction")["ReservedConcurrentExecutions"], "ReservationsConcurrency")
    variables = template()["Globals"]["Function"]["Environment"]["Variables"]
    assert is_ref(variables["RATE_LIMIT_PER_ACCOUNT_PER_MINUTE"], "ApiRateLimitPerAccountPerMinute")
    (container,) = props("GatewayTaskDefinition")["ContainerDefinitions"]
    gateway_env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert int(gateway_env["GATEWAY_LOGIN_FAILURES_PER_ADDRESS"]) > 0


def _gateway_metric_names() -> set[str]:
    from evreserve_gateway import metrics
    from evreserve_gateway.traffic import MessageLog

    counters = MessageLog(writer=None, flush_s=1, max_bytes=1, instance_id="t")  # type: ignore[arg-type]

    return {
        metrics.CHARGERS,
        metrics.CONNECTS,
        metrics.DISCONNECTS,
        metrics.REFUSED,
        metrics.COMMANDS,
        metrics.COMMAND_LATENCY,
        *(f"{metrics.REFUSED}.{status}" for status in metrics.REFUSAL_STATUSES),
        *(f"{metrics.COMMANDS}.{outcome}" for outcome in metrics.OUTCOMES),
        *(f"MessageLog.{name}" for name in counters.counters),
    }


def test_the_dashboard_and_the_gateway_alarms_read_metrics_the_gateway_emits():
    """The dashboard's body is JSON once its ${...} are filled in, and every EvReserve/Gateway metric it or an
    alarm names is one gateway/evreserve_gateway/metrics.py reports."""
    from evreserve_gateway.metrics import NAMESPACE

    body, variables = props("Dashboard")["DashboardBody"].args
    filled = re.sub(r"\$\{[^}]+\}", "X", body)
    widgets = json.loads(filled)["widgets"]
    named: set[str] = set()
    for widget in widgets:
        namespace = None
        for row in widget["properties"]["metrics"]:
            names = [item for item in row if isinstance(item, str)]
            namespace = names[0] if names and names[0] not in (".", "...") else namespace
            if namespace == NAMESPACE and len(names) > 1:
                named.add(names[1])
    assert named and named <= _gateway_metric_names(), named - _gateway_metric_names()
    alarms = [r["Properties"] for r in template()["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    gateway_alarms = [a for a in alarms if a.get("Namespace") == NAMESPACE]
    assert len(gateway_alarms) >= 2
    assert {a["MetricName"] for a in gateway_alarms} <= _gateway_metric_names()
    assert set(variables) == {"ApiName"}


def test_cors_preflights_need_no_key_and_agree_with_the_functions():
    """API Gateway answers OPTIONS itself (no authorizer) with the headers the functions' CORSConfig allows."""
    from evreserve_lambda.app import CORS_HEADERS, CORS_MAX_AGE_S

    api = props("Api")
    assert api["Auth"]["AddDefaultAuthorizerToCorsPreflight"] is False
    cors = api["Cors"]
    assert cors["AllowHeaders"] == "'" + ",".join(CORS_HEADERS) + "'"
    origin = cors["AllowOrigin"]
    assert isinstance(origin, Intrinsic) and origin.fn == "If" and origin.args[0] == "HasCors"
    assert origin.args[2] == "'https://cors.invalid'", "no origin configured: one no page can have"
    assert cors["MaxAge"] == f"'{CORS_MAX_AGE_S}'"
    assert is_ref(template()["Globals"]["Function"]["Environment"]["Variables"]["CORS_ALLOW_ORIGIN"], "CorsAllowOrigin")


def test_endpoint_variables_are_declared_empty_for_sam_local():
    """Deployed, they are empty (boto3 then uses AWS's endpoints); sam local's env.json can only set declared ones."""
    from devstack.invoke import ENDPOINT_VARIABLES as WRITTEN

    variables = template()["Globals"]["Function"]["Environment"]["Variables"]
    assert set(WRITTEN) == ENDPOINT_VARIABLES
    assert {name: variables.get(name) for name in ENDPOINT_VARIABLES} == dict.fromkeys(ENDPOINT_VARIABLES, "")


def test_snapstart_covers_the_functions_a_caller_waits_for():
    """The authorizer and the API functions restore from snapshots (published versions, via the alias);
    the background functions start on demand (their cold starts keep no one waiting)."""
    waited_for = {"AuthorizerFunction", *(f for f, r in resources(FUNCTION).items() if _has_api_event(r))}
    assert template()["Globals"]["Function"]["AutoPublishAlias"] == "live"
    for logical_id in resources(FUNCTION):
        snap = props(logical_id).get("SnapStart")
        if logical_id in waited_for:
            assert snap is not None and is_ref(snap["ApplyOn"], "LambdaSnapStart"), logical_id
        else:
            assert snap is None, logical_id
    authorizer = props("Api")["Auth"]["Authorizers"]["ApiKeyAuthorizer"]["FunctionArn"]
    assert is_ref(authorizer, "AuthorizerFunction.Alias"), "SnapStart never applies to $LATEST"


def _has_api_event(resource: dict[str, Any]) -> bool:
    events = (resource.get("Properties") or {}).get("Events") or {}
    return any(event.get("Type") == "Api" for event in events.values())
