"""scripts/admin_key.py against in-memory AWS (moto): the key lives in Secrets Manager only."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import boto3
import pytest
from fixtures.moto_env import mocked_aws

from devstack.template import create_tables, load_template
from evreserve.security import hash_api_key
from evreserve.storage.accounts import AccountStore

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "admin_key.py"


@pytest.fixture
def script():
    spec = importlib.util.spec_from_file_location("admin_key", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["admin_key"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["admin_key"]


@pytest.fixture
def aws(monkeypatch):
    with mocked_aws(monkeypatch, {"AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "eu-west-1"}):
        dynamodb = boto3.client("dynamodb")
        tables = create_tables(dynamodb, "unit", load_template())
        yield dynamodb, boto3.client("secretsmanager"), tables["REGISTRY_TABLE"]


def test_first_run_stores_a_new_key_and_registers_it_as_admin(script, aws):
    """GIVEN no secret WHEN provisioning THEN the secret holds a key whose hash is the admin key."""
    dynamodb, secrets, table = aws
    assert script.provision(dynamodb, secrets, table, "evreserve/t/admin") is True
    key = secrets.get_secret_value(SecretId="evreserve/t/admin")["SecretString"]
    stored = AccountStore(dynamodb, table).get_api_key(hash_api_key(key))
    assert stored is not None and stored.account_id is None  # platform admin: no account


def test_second_run_keeps_the_key(script, aws):
    """Re-running (a new stage table, a restored one) re-registers the same key, never rotates it."""
    dynamodb, secrets, table = aws
    script.provision(dynamodb, secrets, table, "evreserve/t/admin")
    key = secrets.get_secret_value(SecretId="evreserve/t/admin")["SecretString"]
    assert script.provision(dynamodb, secrets, table, "evreserve/t/admin") is False
    assert secrets.get_secret_value(SecretId="evreserve/t/admin")["SecretString"] == key
