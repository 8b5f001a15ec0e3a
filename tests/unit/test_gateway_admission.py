"""Who may connect and in which version: the gateway's pure admission decisions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from evreserve.models import Charger, OcppVersion
from evreserve_gateway.admission import (
    FailureLockout,
    HandshakeGate,
    LoginThrottle,
    address_key,
    choose_version,
    identity_from_path,
)
from evreserve_gateway.handshake import VerifiedPasswords

V16, V201 = OcppVersion.V16, OcppVersion.V201


@pytest.mark.parametrize(
    ("path", "identity"),
    [
        ("/ocpp/CP-1", "CP-1"),
        ("/ocpp/RDAM%2D123", "RDAM-123"),
        ("/ocpp/CP-1?foo=bar", "CP-1"),
        ("/ocpp/a*b_c=d+e|f@g.h", "a*b_c=d+e|f@g.h"),
        ("/ocpp/" + "x" * 48, "x" * 48),
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
        "/ocpp/RDAM%20123",
        "/ocpp/caf%C3%A9",
        "/ocpp/CP%E2%80%AE1",
        "/ocpp/CP%0A1",
        "/ocpp/CP%091",
        "/ocpp/CP'1",
        "/ocpp/CP%251",
    ],
)
def test_odd_identities_are_refused(path):
    """Paths that are not /ocpp/{identity}, and identities the registry cannot hold (':', '/', blanks,
    controls, non-ASCII, quotes, over 48 characters) are refused."""
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


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lockout_doubles_after_the_free_failures():
    """The first failures are free; each further one locks for twice as long, up to the cap."""
    clock = FakeClock()
    lockout = FailureLockout(free=3, base_s=1.0, max_s=5.0, clock=clock)
    assert [lockout.failed("CP") for _ in range(7)] == [0.0, 0.0, 0.0, 1.0, 2.0, 4.0, 5.0]
    assert lockout.retry_after("CP") == 5.0
    clock.now += 5.0
    assert lockout.retry_after("CP") == 0.0


def test_lockout_forgets_a_quiet_key():
    """A key with no failure for the forget period starts from zero again."""
    clock = FakeClock()
    lockout = FailureLockout(free=2, base_s=1.0, max_s=60.0, forget_s=10.0, clock=clock)
    lockout.failed("CP")
    clock.now += 11.0
    assert lockout.failed("CP") == 0.0


def test_lockout_table_is_bounded():
    """A spray of keys keeps at most max_entries of them."""
    lockout = FailureLockout(free=1, base_s=1.0, max_s=1.0, max_entries=10, clock=FakeClock())
    for n in range(100):
        lockout.failed(f"CP-{n}")
    assert len(lockout) == 10


def test_throttle_locks_identity_and_address_separately():
    """Identity failures lock that identity from anywhere; address failures lock the address for any identity."""
    clock = FakeClock()
    throttle = LoginThrottle(identity_free=2, address_free=3, base_s=1.0, max_s=60.0, clock=clock)
    throttle.failed("CP-1", "10.0.0.1")
    throttle.failed("CP-1", "10.0.0.2")
    assert throttle.retry_after("CP-1", "10.0.0.9") == 0.0  # two failures are free
    throttle.failed("CP-1", "10.0.0.3")
    assert throttle.retry_after("CP-1", "10.0.0.9") == 1.0
    assert throttle.retry_after("CP-2", "10.0.0.1") == 0.0
    throttle.unknown_identity("10.0.0.1")
    throttle.unknown_identity("10.0.0.1")
    assert throttle.retry_after("CP-3", "10.0.0.1") == 0.0  # three free for the address
    throttle.unknown_identity("10.0.0.1")
    assert throttle.retry_after("CP-3", "10.0.0.1") == 1.0


def test_success_clears_the_identity_but_not_the_address():
    """A good login forgets its identity's failures; the address keeps its count."""
    clock = FakeClock()
    throttle = LoginThrottle(identity_free=2, address_free=2, base_s=1.0, max_s=60.0, clock=clock)
    throttle.failed("CP-1", "10.0.0.1")
    throttle.failed("CP-1", "10.0.0.1")
    throttle.succeeded("CP-1")
    throttle.failed("CP-1", "10.0.0.1")
    assert throttle.retry_after("CP-1", None) == 0.0
    assert throttle.retry_after("CP-2", "10.0.0.1") == 1.0


def test_address_throttling_can_be_off():
    """With no per-address budget, addresses are never locked."""
    throttle = LoginThrottle(identity_free=100, address_free=0, base_s=1.0, max_s=60.0, clock=FakeClock())
    for _ in range(10):
        throttle.unknown_identity("10.0.0.1")
    assert throttle.retry_after("CP", "10.0.0.1") == 0.0


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("10.1.2.3", "10.1.2.3"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("::ffff:10.1.2.3", "10.1.2.3"),
        (None, None),
    ],
)
def test_address_key(host, key):
    """IPv6 peers are throttled by their /64, IPv4-mapped ones as IPv4."""
    assert address_key(host) == key


# -- connect storms -------------------------------------------------------------------------


def test_gate_admits_up_to_its_limit_and_frees_places():
    """Past ``limit`` handshakes in progress the gate refuses; a finished one frees a place."""
    gate = HandshakeGate(2, 5.0, clock=FakeClock())
    assert gate.enter() and gate.enter()
    assert not gate.enter()
    gate.leave()
    assert gate.enter()
    assert gate.in_progress == 2


def test_first_refusals_are_asked_back_soon():
    """A few refusals against a gate that turns over quickly get a 1 s wait."""
    gate = HandshakeGate(10, 5.0, clock=FakeClock(), draw=lambda: 1.0)
    assert gate.refuse() == 1


def test_retry_after_spreads_the_refused_over_the_time_to_admit_them():
    """The longest wait is the refused chargers over the measured admission rate, so the retries come back no
    faster than they can be admitted."""
    clock = FakeClock()
    gate = HandshakeGate(10, 10.0, max_retry_s=600, clock=clock, draw=lambda: 1.0)
    for _ in range(50):  # 5 handshakes a second for 10 s
        clock.now += 0.2
        assert gate.enter()
        gate.leave()
    assert 4.5 <= gate.completed_per_s() <= 5.5
    waits = [gate.refuse() for _ in range(400)]
    assert 72 <= waits[-1] <= 88  # 400 waiting at 5/s
    assert waits == sorted(waits)


def test_admission_rate_is_never_taken_below_the_limit_over_the_budget():
    """Each handshake ends within its budget, so the gate turns over at least limit/budget per second."""
    gate = HandshakeGate(64, 5.0, clock=FakeClock())
    assert gate.completed_per_s() == pytest.approx(12.8)


def test_retry_after_is_drawn_between_one_second_and_the_cap():
    """Refused chargers get different waits (the draw), never under 1 s nor over the cap."""
    draws = iter([0.0, 0.5, 1.0])
    gate = HandshakeGate(1, 1.0, max_retry_s=30, clock=FakeClock(), draw=lambda: next(draws))
    gate._refused = 997.0  # a storm's worth of earlier refusals
    assert [gate.refuse(), gate.refuse(), gate.refuse()] == [1, 16, 30]


def test_refusals_decay_when_the_storm_is_over():
    """Refusals long ago no longer lengthen the wait."""
    clock = FakeClock()
    gate = HandshakeGate(10, 5.0, clock=clock, draw=lambda: 1.0)
    for _ in range(500):
        gate.refuse()
    clock.now += 120.0
    assert gate.refuse() == 1


def test_storm_is_reported_as_a_count_at_most_every_interval():
    """Refusals are reported in one count per interval, not one line per charger."""
    clock = FakeClock()
    gate = HandshakeGate(1, 1.0, clock=clock)
    for _ in range(3):
        gate.refuse()
    assert gate.due_report(10.0) == 3
    gate.refuse()
    assert gate.due_report(10.0) == 0
    clock.now += 10.0
    assert gate.due_report(10.0) == 1
    assert gate.due_report(10.0) == 0
