"""What the gateway does with a handled message: nothing (it expires), unless it must come back for the DLQ;
and with an outcome it could not store: it writes it again later, in process.

The runner and its redeliveries run on in-memory fakes of their ports (queue, ledger,
I/O pool); no charger is held, so every command ends ``offline`` at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import pytest

from evreserve.channel import CommandEnvelope
from evreserve.errors import DependencyUnavailable
from evreserve.models import Command, CommandAction, CommandOutcome, OcppVersion, utcnow
from evreserve_gateway.commands import CommandRunner, Received, Redeliveries
from evreserve_gateway.commands import runner as runner_module

T = TypeVar("T")


class FakeQueue:
    def __init__(self) -> None:
        #: (receipt handle, seconds until it is visible again) per ChangeMessageVisibility.
        self.shown_again: list[tuple[str, int]] = []

    def show_again(self, receipt_handle: str, after_s: int) -> None:
        self.shown_again.append((receipt_handle, after_s))


class FakeLedger:
    def __init__(self, failures: int = 0) -> None:
        self.completed: list[str] = []
        #: How many writes fail (storage down) before they succeed.
        self.failures = failures

    def complete(self, command: Command, outcome: CommandOutcome) -> CommandOutcome:
        if self.failures:
            self.failures -= 1
            raise DependencyUnavailable("DynamoDB is down")
        self.completed.append(command.command_id)
        return outcome


async def inline[T](fn: Callable[..., T], /, *args: Any) -> T:
    return fn(*args)


def runner(queue: FakeQueue, ledger: FakeLedger, looked_up: list[str], *, keep_poison: bool = False) -> CommandRunner:
    def find_session(command: Command) -> None:
        looked_up.append(command.command_id)

    return CommandRunner(
        ledger,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]  # no ReserveNow here, so no reservation is ever read
        Redeliveries(queue, inline),  # type: ignore[arg-type]
        inline,  # type: ignore[arg-type]
        "i1",
        find_session,
        keep_poison_messages=keep_poison,
    )


#: One creation time for every copy: a redelivery carries the same envelope, same command.
CREATED = utcnow()


def message(command_id: str, receipt: str) -> Received:
    now = CREATED
    command = Command(
        command_id=command_id,
        account_id=7,
        charger_id=12,
        ocpp_id="CP-12",
        ocpp_version=OcppVersion.V16,
        action=CommandAction.CANCEL_RESERVATION,
        payload={"reservationId": 1},
        instance_id="i1",
        session_id="s",
        created_at=now,
        deadline=now + timedelta(days=1),  # CREATED is taken at import: the suite may run long
        request_hash=command_id,
    )
    return Received(f"m-{receipt}", receipt, CommandEnvelope(command=command).to_json(), 1)


@pytest.fixture(autouse=True)
def no_write_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "WRITE_RETRIES_S", (0.0,))
    monkeypatch.setattr(runner_module, "REWRITE_AFTER_S", (0.01,))


async def test_a_handled_message_is_left_to_expire():
    """Stored outcomes ask nothing more of SQS: no deletion, no change of visibility."""
    queue, ledger, looked_up = FakeQueue(), FakeLedger(), []
    run = runner(queue, ledger, looked_up)
    for n in range(3):
        run.on_message(message(f"c{n}", f"r{n}"))
    assert await run.join()
    assert (ledger.completed, queue.shown_again) == (["c0", "c1", "c2"], [])


async def test_a_copy_of_a_handled_command_is_not_run_again():
    """SQS delivers a message twice now and then: the second copy is neither sent nor stored again."""
    queue, ledger, looked_up = FakeQueue(), FakeLedger(), []
    run = runner(queue, ledger, looked_up)
    run.on_message(message("c0", "r0"))
    await run.join()
    run.on_message(message("c0", "r0-again"))
    await run.join()
    assert (looked_up, ledger.completed, queue.shown_again) == (["c0"], ["c0"], [])


async def test_an_outcome_that_could_not_be_stored_is_written_again_later():
    """Storage down through the in-process retries (no spool): the outcome is kept and written
    again after REWRITE_AFTER_S, in this process, without sending the command again and without
    asking SQS for anything."""
    queue, ledger, looked_up = FakeQueue(), FakeLedger(failures=3), []
    run = runner(queue, ledger, looked_up)
    run.on_message(message("c0", "r0"))
    assert await run.join()
    assert ledger.completed == []
    for _ in range(100):
        await asyncio.sleep(0.01)
        if ledger.completed:
            break
    assert (looked_up, ledger.completed, queue.shown_again) == (["c0"], ["c0"], [])


async def test_later_attempts_give_up_after_rewrite_for_s(monkeypatch: pytest.MonkeyPatch, caplog):
    """An outcome storage never takes is given up (and said so) once REWRITE_FOR_S has passed."""
    monkeypatch.setattr(runner_module, "REWRITE_FOR_S", 0.05)
    queue, ledger, looked_up = FakeQueue(), FakeLedger(failures=1_000), []
    run = runner(queue, ledger, looked_up)
    run.on_message(message("c0", "r0"))
    assert await run.join()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if "gave up storing a command outcome" in caplog.text:
            break
    assert "gave up storing a command outcome" in caplog.text
    assert run.abandon_rewrites() == 0


async def test_a_drain_does_not_wait_for_later_attempts_and_abandons_them():
    """join() returns while an outcome waits for its next attempt; abandon_rewrites() stops it."""
    queue, ledger, looked_up = FakeQueue(), FakeLedger(failures=1_000), []
    run = runner(queue, ledger, looked_up)
    run.on_message(message("c0", "r0"))
    assert await run.join(limit_s=1.0)
    assert run.abandon_rewrites() == 1
    await asyncio.sleep(0)


@pytest.mark.parametrize(("keep_poison", "shown_again"), [(True, [("r0", 0)]), (False, [])])
async def test_an_unreadable_message_comes_back_for_the_dlq_only_if_there_is_one(keep_poison, shown_again):
    """With a DLQ, an unreadable message is shown again at once, so SQS counts its receives and
    moves it there; without one it just expires."""
    queue, ledger, looked_up = FakeQueue(), FakeLedger(), []
    run = runner(queue, ledger, looked_up, keep_poison=keep_poison)
    run.on_message(Received("m-r0", "r0", "not a command", 1))
    assert await run.join()
    assert (queue.shown_again, looked_up) == (shown_again, [])


async def test_a_failed_request_for_redelivery_is_logged_not_raised(caplog: pytest.LogCaptureFixture):
    """SQS refusing the ChangeMessageVisibility of an unreadable message: the runner goes on, and says so."""

    class Gone(FakeQueue):
        def show_again(self, receipt_handle: str, after_s: int) -> None:
            raise DependencyUnavailable("SQS is down")

    run = runner(Gone(), FakeLedger(), [], keep_poison=True)
    run.on_message(Received("m-r0", "r0", "not a command", 1))
    assert await run.join()
    assert "it expires instead" in caplog.text
