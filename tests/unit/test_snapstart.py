"""Lambda SnapStart hooks (evreserve_lambda/snapstart.py): primed before the snapshot, reseeded after a restore."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import snapshot_restore_py as hooks
from api_harness import Stack, start_stack
from fixtures.functions import load_function

from evreserve_lambda import snapstart, wiring


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    for stack in start_stack(monkeypatch):
        wiring.use_services(None)  # nothing built yet, as in a fresh init
        yield stack
    wiring.use_services(None)


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hooks, "_before_snapshot_registry", [])
    monkeypatch.setattr(hooks, "_after_restore_registry", [])


def run(registered: list[tuple[object, tuple[object, ...], dict[str, object]]]) -> None:
    for func, args, kwargs in registered:
        func(*args, **kwargs)  # type: ignore[operator]


@pytest.mark.usefixtures("registry")
@pytest.mark.parametrize("function", ["authorizer", "reservations", "publisher", "sweeper"])
def test_a_snapstart_init_builds_the_clients_before_the_snapshot(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, function: str
):
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")
    # The publisher's own resources (building clients makes no call: any names do).
    monkeypatch.setenv("EVENT_BUS_NAME", "bus")
    monkeypatch.setenv("WEBHOOK_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/deliveries")
    module = load_function(function)
    assert hooks.get_before_snapshot() and hooks.get_after_restore()
    run(hooks.get_before_snapshot())
    if function in ("authorizer", "reservations"):
        assert wiring._services is not None, "the snapshot holds the built services"
    else:
        built = getattr(module, "_clients", None) or getattr(module, "_store", None)
        assert built is not None, "the snapshot holds the function's clients"


@pytest.mark.usefixtures("registry")
def test_each_restored_copy_draws_its_own_random_numbers(monkeypatch: pytest.MonkeyPatch):
    """Copies of one snapshot share the random state they were taken with, until the hook reseeds it."""
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")
    assert snapstart.install()
    random.seed(7)
    state = random.getstate()
    first_copy = random.random()
    random.setstate(state)  # a second copy restored from the same snapshot
    run(hooks.get_after_restore())
    assert random.random() != first_copy


@pytest.mark.usefixtures("registry")
def test_outside_snapstart_nothing_is_registered_or_built(stack: Stack, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
    load_function("reservations")
    assert hooks.get_before_snapshot() == [] and hooks.get_after_restore() == []
    assert wiring._services is None


@pytest.mark.usefixtures("registry")
def test_a_prime_that_fails_leaves_the_work_to_the_first_request(monkeypatch: pytest.MonkeyPatch, caplog):
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")

    def broken() -> None:
        raise RuntimeError("no settings")

    snapstart.install(broken)
    run(hooks.get_before_snapshot())  # does not raise: the snapshot is still taken
    assert "the first request will" in caplog.text
