"""The gateway's settings: its instance id on ECS, and the bounds its instance queue relies on."""

from __future__ import annotations

import annotated_types
import pytest

from evreserve.settings import ChannelSettings
from evreserve_gateway.commands.queue import HIDDEN_S, RETENTION_S
from evreserve_gateway.commands.runner import DEDUPE_TTL_S, WRITE_RETRIES_S
from evreserve_gateway.settings import GatewaySettings, ecs_task_id

METADATA_URI = "http://169.254.170.2/v4/4f8ec3c3-0bd5-4c3a-a9b3-5ce2b1a9d8c1"
TASK_ID = "158d1c8083dd49d6b527399fd6414f5c"
#: The part of a real ``{ECS_CONTAINER_METADATA_URI_V4}/task`` answer that matters here.
TASK_METADATA = {
    "Cluster": "arn:aws:ecs:eu-west-1:111122223333:cluster/prod-evreserve",
    "TaskARN": f"arn:aws:ecs:eu-west-1:111122223333:task/prod-evreserve/{TASK_ID}",
    "LaunchType": "FARGATE",
}


def _fetch(expected_url: str, answer: object):
    calls: list[str] = []

    def fetch(url: str) -> object:
        calls.append(url)
        assert url == expected_url
        if isinstance(answer, Exception):
            raise answer
        return answer

    return fetch, calls


def test_task_id_read_from_the_metadata_endpoint():
    """On ECS without INSTANCE_ID, the instance id is the last segment of the TaskARN."""
    fetch, calls = _fetch(f"{METADATA_URI}/task", TASK_METADATA)
    assert ecs_task_id({"ECS_CONTAINER_METADATA_URI_V4": METADATA_URI}, fetch) == TASK_ID
    assert len(calls) == 1


def test_explicit_instance_id_wins_without_asking_ecs():
    """INSTANCE_ID set: the endpoint is not called and the setting stays the operator's."""
    fetch, calls = _fetch(f"{METADATA_URI}/task", TASK_METADATA)
    environ = {"ECS_CONTAINER_METADATA_URI_V4": METADATA_URI, "INSTANCE_ID": "gw-1"}
    assert ecs_task_id(environ, fetch) is None
    assert calls == []


def test_outside_ecs_nothing_is_fetched():
    """Without the metadata variable (a laptop, the tests) the random default applies."""
    fetch, calls = _fetch("", TASK_METADATA)
    assert ecs_task_id({}, fetch) is None
    assert calls == []


@pytest.mark.parametrize("answer", [OSError("connection refused"), {"Cluster": "x"}, ["not", "a", "dict"]])
def test_unusable_metadata_falls_back_to_a_random_id(answer, caplog):
    """A failing or odd endpoint is logged and leaves the random id: any unique id routes."""
    fetch, _ = _fetch(f"{METADATA_URI}/task", answer)
    assert ecs_task_id({"ECS_CONTAINER_METADATA_URI_V4": METADATA_URI}, fetch) is None
    assert "ECS metadata" in caplog.text


def test_task_id_makes_a_valid_queue_name_for_the_longest_stage():
    """A task id passes the instance id pattern, and the queue name fits SQS's 80 characters."""
    longest_stage = "s" * 16  # template.yaml: Stage AllowedPattern [a-z0-9-]{1,16}
    settings = GatewaySettings(
        instance_id=TASK_ID,
        gateway_queue_prefix=f"{longest_stage}-evreserve-gw-",
        registry_table="r",
        reservations_table="s",
        commands_table="c",
        ocpp_messages_table="m",
    )
    assert settings.instance_id == TASK_ID
    assert len(settings.queue_name) <= 80


def _upper_bound(model: type, name: str) -> float:
    """A settings field's ``le`` bound: the most an operator can set."""
    return next(m.le for m in model.model_fields[name].metadata if isinstance(m, annotated_types.Le))


def test_handled_messages_outlive_every_command_and_expire_before_they_could_show_again():
    """The instance queue deletes nothing (commands.queue): that holds only if the retention
    outlasts the longest command (deadline + grace, at their bounds, + the quick write retries:
    a copy delivered twice must still meet the dedupe entry of the first) and the visibility
    timeout outlasts the retention."""
    longest_command_s = (
        _upper_bound(ChannelSettings, "command_timeout_s")
        + _upper_bound(ChannelSettings, "command_grace_s")
        + sum(WRITE_RETRIES_S)
    )
    assert longest_command_s < RETENTION_S < HIDDEN_S
    assert RETENTION_S == 60  # SQS's least: anything more is messages kept for nothing
    assert DEDUPE_TTL_S > RETENTION_S  # a copy redelivered within retention is still recognised
