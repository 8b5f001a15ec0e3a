"""Who may connect and in which version: the gateway's pure admission decisions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from evreserve.models import Charger, OcppVersion
from evreserve_gateway.admission import VerifiedPasswords, choose_version, identity_from_path

V16, V201 = OcppVersion.V16, OcppVersion.V201


@pytest.mark.parametrize(
    ("path", "identity"),
    [
        ("/ocpp/CP-1", "CP-1"),
        ("/ocpp/RDAM%20123", "RDAM 123"),
        ("/ocpp/CP-1?foo=bar", "CP-1"),
        ("/ocpp/caf%C3%A9", "café"),
    ],
)
def test_identity_is_the_percent_decoded_last_segment(path, identity):
    """The identity is the percent-decoded segment after /ocpp/, without the query string."""
    assert identity_from_path(path) == identity


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/ocpp/",
        "/other/CP-1",
        "/ocpp/a/b",
        "/ocpp/a%2Fb",
        "/ocpp/a%3Ab",
        "/ocpp/%20CP",
        "/ocpp/a%00",
        "/ocpp/%FF",
        "/ocpp/" + "x" * 49,
    ],
)
def test_odd_identities_are_refused(path):
    """Paths that are not /ocpp/{identity}, and identities with ':', '/', controls, blanks or too long, are refused."""
    assert identity_from_path(path) is None


@pytest.mark.parametrize(
    ("offered", "pinned", "chosen"),
    [
        (["ocpp1.6", "ocpp2.0.1"], None, V201),
        (["ocpp1.6"], None, V16),
        (["ocpp2.0.1", "ocpp1.6"], V16, V16),
        ([], V201, V201),
        ([], None, None),
        (["ocpp2.1"], None, None),
        (["ocpp2.0.1"], V16, None),
    ],
)
def test_version_choice(offered, pinned, chosen):
    """The registry's version wins; otherwise the newest offered; none offered falls back to the registry."""
    assert choose_version(offered, pinned) is chosen


def _charger(password_hash: str) -> Charger:
    now = datetime.now(UTC)
    return Charger(id=1, account_id=1, ocpp_id="CP", password_hash=password_hash, created_at=now, updated_at=now)


def test_remembered_password_is_known():
    """A password remembered after a successful check is known next time; another is not."""
    cache = VerifiedPasswords()
    charger = _charger("scrypt$hash-1")
    cache.remember(charger, "secret-password-1")
    assert cache.known(charger, "secret-password-1")
    assert not cache.known(charger, "secret-password-2")


def test_changed_password_hash_forgets_the_password():
    """After the stored hash changes, a remembered password must be verified again."""
    cache = VerifiedPasswords()
    cache.remember(_charger("scrypt$hash-1"), "secret-password-1")
    assert not cache.known(_charger("scrypt$hash-2"), "secret-password-1")


def test_remembered_passwords_expire():
    """Entries older than the time-to-live are not trusted."""
    cache = VerifiedPasswords(ttl_s=-1)
    charger = _charger("scrypt$hash-1")
    cache.remember(charger, "secret-password-1")
    assert not cache.known(charger, "secret-password-1")
