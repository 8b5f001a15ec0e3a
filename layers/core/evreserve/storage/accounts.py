"""Accounts and API keys (by hash), in the registry table."""

from __future__ import annotations

from collections.abc import Iterator

from ..aws import ClientError, unavailable_on_transport_errors
from ..models import Account, ApiKey, UnknownTokenPolicy
from . import keys
from .base import is_condition_failure
from .items import account_from, account_item, api_key_from, api_key_item
from .paging import Page
from .registry_table import RegistryTable


class AccountStore(RegistryTable):
    def get_api_key(self, key_hash: str) -> ApiKey | None:
        item = self._get(keys.api_key(key_hash))
        return api_key_from(item) if item else None

    def get_account(self, account_id: int) -> Account | None:
        item = self._get(keys.account(account_id))
        return account_from(item) if item else None

    def create_account(self, account: Account) -> None:
        self._put_new(account_item(account))

    def update_account(
        self, account_id: int, *, name: str | None = None, unknown_id_tags: UnknownTokenPolicy | None = None
    ) -> Account | None:
        """Change the fields given; ``None``: no such account."""
        values = {"#name": ("name", name), "#unknown": ("unknownIdTags", unknown_id_tags)}
        given = {alias: pair for alias, pair in values.items() if pair[1] is not None}
        if not given:
            return self.get_account(account_id)
        try:
            with unavailable_on_transport_errors(self.service):
                answer = self._client.update_item(
                    TableName=self._table,
                    Key=keys.account(account_id),
                    UpdateExpression="SET " + ", ".join(f"{alias} = :{alias[1:]}" for alias in given),
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeNames={alias: attribute for alias, (attribute, _) in given.items()},
                    ExpressionAttributeValues={
                        f":{alias[1:]}": {"S": str(value)} for alias, (_, value) in given.items()
                    },
                    ReturnValues="ALL_NEW",
                )
        except ClientError as exc:
            if is_condition_failure(exc):
                return None
            raise
        return account_from(answer["Attributes"])

    def put_api_key(self, key: ApiKey) -> None:
        self._put_new(api_key_item(key))

    def page_accounts(self, *, limit: int, cursor: str | None) -> Page[Account]:
        return self._page_index(keys.accounts_index()[0], account_from, limit=limit, cursor=cursor)

    def page_api_keys(self, account_id: int, *, limit: int, cursor: str | None) -> Page[ApiKey]:
        return self._page_index(keys.api_keys_index_pk(account_id), api_key_from, limit=limit, cursor=cursor)

    def api_keys(self, account_id: int) -> Iterator[ApiKey]:
        """Every key of an account."""
        for item, _ in self._query_index(keys.api_keys_index_pk(account_id), None, 50):
            yield api_key_from(item)

    def delete_api_key(self, key: ApiKey) -> None:
        with unavailable_on_transport_errors(self.service):
            self._client.delete_item(TableName=self._table, Key=keys.api_key(key.key_hash))
