"""Provision the platform admin API key of a deployed stack, kept in AWS Secrets Manager.

    python scripts/admin_key.py --stack evreserve-prod [--secret-name evreserve/prod/admin-api-key]

Idempotent: the first run generates a key, stores it as the secret, and registers its hash
in the stack's registry table (``ensure_admin_key``, the same call ``make run`` uses);
later runs read the secret and make sure the registry still has it. The key is never
printed; read it with ``aws secretsmanager get-secret-value --secret-id NAME``. Runs with
the caller's AWS credentials (cloudformation:DescribeStacks, secretsmanager:GetSecretValue
/ CreateSecret, dynamodb:PutItem / GetItem on the registry), from a laptop or CI, once
per stage (docs/deploy.md).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError

from evreserve.security import generate_api_key
from evreserve.services.accounts import ensure_admin_key
from evreserve.storage.accounts import AccountStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def stack_output(cloudformation: Any, stack: str, key: str) -> str:
    (described,) = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    for output in described.get("Outputs", []):
        if output["OutputKey"] == key:
            return str(output["OutputValue"])
    raise SystemExit(f"stack {stack} has no output {key}")


def secret_key(secrets: Any, name: str) -> tuple[str, bool]:
    """The key stored as ``name``, creating the secret with a new key if missing; (key, created)."""
    try:
        return str(secrets.get_secret_value(SecretId=name)["SecretString"]), False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
    key, _, _ = generate_api_key()
    secrets.create_secret(
        Name=name,
        SecretString=key,
        Description="evreserve platform admin API key (Authorization: Bearer ...); see docs/deploy.md",
    )
    return key, True


def provision(dynamodb: DynamoDBClient, secrets: Any, registry_table: str, secret_name: str) -> bool:
    """Make the secret's key an admin key of ``registry_table``; True when the key is new."""
    key, created = secret_key(secrets, secret_name)
    ensure_admin_key(AccountStore(dynamodb, registry_table), key)
    return created


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help="CloudFormation stack name (sam deploy --stack-name)")
    parser.add_argument("--secret-name", help="Secrets Manager name; default evreserve/{stack}/admin-api-key")
    parser.add_argument("--region", help="AWS region; default from the AWS configuration")
    args = parser.parse_args()
    session = boto3.session.Session(region_name=args.region)
    table = stack_output(session.client("cloudformation"), args.stack, "RegistryTableName")
    name = args.secret_name or f"evreserve/{args.stack}/admin-api-key"
    created = provision(session.client("dynamodb"), session.client("secretsmanager"), table, name)
    print(f"{'created' if created else 'found'} secret {name}; its key is a platform admin key of {table}")


if __name__ == "__main__":
    main()
