"""Secrets are stored only as hashes and checked in constant time."""

from evreserve.security import (
    API_KEY_PREFIX,
    api_key_matches,
    generate_api_key,
    generate_password,
    hash_password,
    needs_rehash,
    scrypt_hash,
    verify_password,
)


def test_password_hash_verifies_only_the_right_password():
    """An Argon2id hash (OWASP's parameters) accepts its password and nothing else, and never contains it."""
    password = generate_password()
    stored = hash_password(password)
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$") and not needs_rehash(stored)
    assert password not in stored
    assert verify_password(password, stored)
    assert not verify_password(password + "x", stored)


def test_same_password_hashes_differently():
    """Each hash has its own salt."""
    assert hash_password("correct horse battery") != hash_password("correct horse battery")


def test_garbage_hash_never_verifies():
    """A malformed stored hash is a refusal, not an exception."""
    assert not verify_password("anything", "not-a-hash")
    assert not verify_password("anything", "$argon2id$v=19$m=19456,t=2,p=1$broken")


def test_a_former_scrypt_hash_still_verifies_and_asks_to_be_rehashed():
    stored = scrypt_hash("correct horse battery")
    assert verify_password("correct horse battery", stored) and not verify_password("wrong", stored)
    assert needs_rehash(stored)
    weaker = "$argon2id$v=19$m=8192,t=1,p=1$" + hash_password("x").rsplit("$", 2)[1] + "$" + "A" * 43
    assert needs_rehash(weaker)


def test_api_key_is_random_and_matches_its_hash():
    """Keys are unique, recognisable by prefix, and only their hash is needed to check them."""
    key, key_id, key_hash = generate_api_key()
    other, _, _ = generate_api_key()
    assert key != other and key.startswith(API_KEY_PREFIX + key_id)
    assert api_key_matches(key, key_hash)
    assert not api_key_matches(other, key_hash)


class _OneKeyRegistry:
    """A registry holding one API key item, returned for any hash asked (a corrupted index)."""

    def __init__(self, key_hash: str) -> None:
        from evreserve.models import ApiKey, utcnow

        self.key = ApiKey(key_id="k1", key_hash=key_hash, name="t", account_id=1, created_at=utcnow())

    def get_api_key(self, key_hash: str):
        return self.key


def test_authenticate_confirms_the_stored_hash_and_stores_no_key():
    """A key is accepted only if its own hash is the stored one; the key itself is nowhere in the item."""
    import pytest

    from evreserve.errors import Unauthorized
    from evreserve.security import hash_api_key
    from evreserve.services.accounts import AccountService

    key, key_id, key_hash = generate_api_key()
    assert key_hash == hash_api_key(key) and key not in key_hash and key_id in key
    registry = _OneKeyRegistry(key_hash)
    service = AccountService(registry, None)  # type: ignore[arg-type]
    assert service.authenticate(f"Bearer {key}").key_id == "k1"
    other, _, _ = generate_api_key()
    with pytest.raises(Unauthorized):
        service.authenticate(f"Bearer {other}")
