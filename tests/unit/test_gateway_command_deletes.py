"""How the gateway deletes handled messages: batched, lingering, flushed on drain, never a second send.

The runner and the queue's deletions run on in-memory fakes of their ports (queue, ledger,
I/O pool); no charger is held, so every command ends ``offline`` at once, which is all a
deletion needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from evreserve.channel import CommandEnvelope
from evreserve.models import Command, CommandAction, CommandOutcome, OcppVersion, utcnow
from evreserve_gateway.commands import CommandRunner, Deletions, Received

T = TypeVar("T")

#: Longer than any test runs: a deletion that goes out did so for a reason other than time.
FOREVER_S = 3600.0


class FakeQueue:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def delete(self, receipt_handles: list[str]) -> list[str]:
        self.batches.append(list(receipt_handles))
        return []


class FakeLedger:
    def __init__(self) -> None:
        self.completed: list[str] = []

    def complete(self, command: Command, outcome: CommandOutcome) -> CommandOutcome:
        self.completed.append(command.command_id)
        return outcome


async def inline[T](fn: Callable[..., T], /, *args: Any) -> T:
    return fn(*args)


def runner(queue: FakeQueue, ledger: FakeLedger, linger_s: float, looked_up: list[str]) -> CommandRunner:
    def find_session(command: Command) -> None:
        looked_up.append(command.command_id)

    return CommandRunner(
        ledger,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]  # no ReserveNow here, so no reservation is ever read
        Deletions(queue, inline, linger_s),  # type: ignore[arg-type]
        inline,  # type: ignore[arg-type]
        "i1",
        find_session,
        keep_poison_messages=False,
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


async def settle(run: CommandRunner) -> None:
    """Let every command run to its end (with inline I/O, a few loop turns); the deleter may still linger."""
    for _ in range(10):
        await asyncio.sleep(0)
    assert run.in_flight == 0


async def test_handled_messages_wait_and_share_one_batch():
    """Three commands handled apart in time: no delete yet, then one DeleteMessageBatch for the three on drain."""
    queue, ledger, looked_up = FakeQueue(), FakeLedger(), []
    run = runner(queue, ledger, FOREVER_S, looked_up)
    for n in range(3):
        run.on_message(message(f"c{n}", f"r{n}"))
        await settle(run)
    assert (ledger.completed, queue.batches) == (["c0", "c1", "c2"], [])
    assert await run.join()
    assert queue.batches == [["r0", "r1", "r2"]]


async def test_ten_pending_go_without_waiting():
    """The tenth pending deletion sends a full batch at once; the rest waits for the drain."""
    queue, ledger, looked_up = FakeQueue(), FakeLedger(), []
    run = runner(queue, ledger, FOREVER_S, looked_up)
    for n in range(12):
        run.on_message(message(f"c{n}", f"r{n}"))
    await settle(run)
    assert queue.batches == [[f"r{n}" for n in range(10)]]
    await run.join()
    assert queue.batches[1:] == [["r10", "r11"]]


async def test_no_linger_still_batches_a_burst():
    """With a linger of 0, the completions of one burst still share a batch."""
    queue, ledger, looked_up = FakeQueue(), FakeLedger(), []
    run = runner(queue, ledger, 0.0, looked_up)
    for n in range(3):
        run.on_message(message(f"c{n}", f"r{n}"))
    await settle(run)
    assert queue.batches == [["r0", "r1", "r2"]]


async def test_redelivered_handled_command_is_not_run_again_but_deleted():
    """A handled command whose deletion was lost comes back: not run again, its new receipt deleted."""
    queue, ledger, looked_up = FakeQueue(), FakeLedger(), []
    run = runner(queue, ledger, FOREVER_S, looked_up)
    run.on_message(message("c0", "r0"))
    await run.join()
    run.on_message(message("c0", "r0-again"))
    await run.join()
    assert (looked_up, ledger.completed) == (["c0"], ["c0"])
    assert queue.batches == [["r0"], ["r0-again"]]
