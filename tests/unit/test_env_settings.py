"""Settings read from the environment (evreserve.settings.EnvSettings), as pydantic-settings read them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from evreserve.settings import AwsSettings, ChannelSettings, TableSettings

TABLES = {
    "REGISTRY_TABLE": "reg",
    "RESERVATIONS_TABLE": "res",
    "COMMANDS_TABLE": "cmd",
    "OCPP_MESSAGES_TABLE": "log",
}


def test_each_field_comes_from_its_variable_and_keywords_win(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in TABLES.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COMMAND_TIMEOUT_S", "7.5")
    monkeypatch.setenv("command_grace_s", "1")  # any case, as before
    assert TableSettings().commands_table == "cmd"
    channel = ChannelSettings(command_grace_s=3)
    assert (channel.command_timeout_s, channel.command_grace_s) == (7.5, 3)
    assert ChannelSettings.from_environment().command_grace_s == 1


def test_an_alias_takes_its_first_variable_that_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert AwsSettings().region == "eu-west-1"
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert AwsSettings().region == "eu-central-1"
    assert AwsSettings(region="us-west-2").region == "us-west-2"


@pytest.mark.parametrize(("name", "value"), [("COMMAND_TIMEOUT_S", "soon"), ("COMMAND_TIMEOUT_S", "99")])
def test_a_bad_value_fails_the_start_naming_the_setting(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match="command_timeout_s"):
        ChannelSettings()


def test_a_missing_required_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TABLES:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError, match="registry_table"):
        TableSettings()
