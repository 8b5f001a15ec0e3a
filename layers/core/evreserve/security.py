"""Secrets: charger passwords (slow salted hashes) and API keys (random, stored hashed).

Charger passwords may be short and human-chosen, so they are stored as Argon2id hashes
with OWASP's parameters (19 MiB, 2 passes, 1 lane). Hashes made before, with scrypt at
N=2^14, still verify, and ``needs_rehash`` tells the gateway to store an Argon2id one in
their place at the charger's next successful login.

API keys are 256-bit random strings: a plain SHA-256 is enough to make a stolen table
useless, and lets the authorizer find a key by its hash in one read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from argon2 import PasswordHasher

_ARGON2_PREFIX = "$argon2id$"


@cache
def _argon2() -> PasswordHasher:
    # Imported on first use (~20 ms): the authorizer and most functions never hash a password.
    from argon2 import PasswordHasher, Type

    # OWASP Password Storage Cheat Sheet, Argon2id: m=19 MiB, t=2, p=1.
    return PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16, type=Type.ID)


# The former scheme, still verified.
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
_SCRYPT_LEN = 32
_PREFIX = "scrypt"

#: Visible prefix of every API key, so leaked keys are easy to recognise and scan for.
API_KEY_PREFIX = "evr_"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    return _argon2().hash(password)


def needs_rehash(stored: str) -> bool:
    """Whether a stored hash is of an older scheme or weaker parameters than ``hash_password`` makes now."""
    return not stored.startswith(_ARGON2_PREFIX) or _argon2().check_needs_rehash(stored)


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a ``hash_password`` result (or a former scrypt one)."""
    if stored.startswith(_ARGON2_PREFIX):
        from argon2.exceptions import InvalidHashError, VerificationError

        try:
            return _argon2().verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
    return _verify_scrypt(password, stored)


def _verify_scrypt(password: str, stored: str) -> bool:
    try:
        prefix, n, r, p, salt, digest = stored.split("$")
        if prefix != _PREFIX:
            return False
        expected = _unb64(digest)
        actual = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def scrypt_hash(password: str) -> str:
    """A hash of the former scheme: for tests and benchmarks of the upgrade, never stored by the service."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=_SCRYPT_LEN)
    return f"{_PREFIX}${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def generate_password() -> str:
    """A charger password within OCPP's limits (16-40 chars; 1.6 AuthorizationKey <= 40 hex)."""
    return secrets.token_hex(16)


def generate_api_key() -> tuple[str, str, str]:
    """A new API key: ``(key, key_id, key_hash)``. Only the hash and the id are stored."""
    key_id = secrets.token_hex(6)
    key = f"{API_KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return key, key_id, hash_api_key(key)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_matches(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_api_key(key), stored_hash)
