"""The gateway fuzzed with malformed and hostile frames, while another charger keeps heartbeating.

Every frame must get what OCPP-J prescribes for its version (docs/gateway.md, "Errors"): a
CALLRESULT or CALLERROR with the CALL's id, the version's error for an unreadable frame,
nothing for an answer to a CALL the gateway never sent. The gateway never closes the
connection, except with 1009 for a frame over ``GATEWAY_MAX_FRAME_BYTES``, never logs a
handler failure, and the other charger's heartbeats are answered throughout.

Examples are bounded so the module stays within a few seconds per version; the counts of
frames sent are printed (``-s``) and asserted to be non-trivial.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fixtures.gateway_fixtures import charger_session, charger_url, wait_held
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocpp.v16.enums import Action as V16Action
from ocpp.v201 import call as call201
from ocpp.v201.enums import Action as V201Action
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from evreserve.models import OcppVersion

pytestmark = pytest.mark.integration

V16, V201 = OcppVersion.V16, OcppVersion.V201
MAX_FRAME = 64 * 1024

ERROR_CODES = {
    V16: {
        "NotImplemented",
        "NotSupported",
        "InternalError",
        "ProtocolError",
        "SecurityError",
        "FormationViolation",
        "PropertyConstraintViolation",
        "OccurenceConstraintViolation",
        "TypeConstraintViolation",
        "GenericError",
    },
    V201: {
        "FormatViolation",
        "GenericError",
        "InternalError",
        "MessageTypeNotSupported",
        "NotImplemented",
        "NotSupported",
        "OccurenceConstraintViolation",
        "OccurrenceConstraintViolation",
        "PropertyConstraintViolation",
        "ProtocolError",
        "RpcFrameworkError",
        "SecurityError",
        "TypeConstraintViolation",
    },
}

#: What the runs found, for the report: frames sent, connections, findings.
FIGURES: Counter[str] = Counter()

# -- strategies ------------------------------------------------------------------------------

ACTIONS = sorted({a.value for a in V16Action} | {a.value for a in V201Action})
FIELDS = [
    "connectorId", "evseId", "status", "errorCode", "idTag", "idToken", "type", "reservationId", "timestamp",
    "chargePointVendor", "chargePointModel", "chargingStation", "vendorId", "data", "meterValue", "transactionId",
    "eventType", "triggerReason", "seqNo", "transactionInfo", "reservationUpdateStatus", "connectorStatus",
]  # fmt: skip
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
payloads = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=12), json_values, max_size=6) | json_values
message_ids = st.text(max_size=40) | st.integers() | st.none() | st.just("")
kinds = st.sampled_from([2, 2, 2, 3, 4]) | st.integers(min_value=-3, max_value=9) | st.sampled_from([2.0, "2", True])
actions = (
    st.sampled_from(ACTIONS)
    | st.sampled_from(["", "heartbeat", "__init__", "route_map", "_answer"])
    | st.text(max_size=20)
)
structured = st.builds(
    lambda kind, mid, action, payload, extra: json.dumps([kind, mid, action, payload, *extra]),
    kinds,
    message_ids,
    actions,
    payloads,
    st.lists(json_values, max_size=2),
)
short_frames = st.builds(lambda items: json.dumps(items), st.lists(json_values, max_size=3))
frames = st.one_of(
    structured,
    structured,
    short_frames,
    json_values.map(json.dumps),
    st.text(max_size=60),
    st.binary(max_size=60),
)

#: Hand-made hostile frames that random generation is unlikely to hit.
HOSTILE: list[str | bytes] = [
    "[" * 50_000,  # nesting deeper than the JSON decoder's recursion limit
    '[2,"deep","DataTransfer",{"vendorId":"x","data":' + "[" * 900 + "]" * 900 + "}]",
    *(
        '[2,"deep-' + str(n) + '","DataTransfer",{"vendorId":"x","data":' + "[" * n + "]" * n + "}]"
        for n in (*range(880, 950, 5), 970, 990)
    ),
    '[2,"deep2","DataTransfer",{"vendorId":"x","data":' + '{"a":' * 900 + "1" + "}" * 900 + "}]",
    '[2,"big-int","StatusNotification",{"connectorId":' + "9" * 4000 + ',"errorCode":"NoError","status":"Available"}]',
    '[2,"inf","StatusNotification",{"connectorId":1e400,"errorCode":"NoError","status":"Available"}]',
    '[2,"nan","Heartbeat",{"x":NaN}]',
    '[2,"surrogate\\ud800","Heartbeat",{}]',
    '[2,"' + "i" * 10_000 + '","Heartbeat",{}]',
    '[2,"long-action","' + "A" * 10_000 + '",{}]',
    '[2,"dup","Heartbeat",{},{}]',
    '[2,"dup","Heartbeat",{}]',
    '[2,"dup","Heartbeat",{}]',
    '[2,"kw","BootNotification",{"self":1,"chargePointVendor":"v","chargePointModel":"m"}]',
    '[2,"kw2","Authorize",{"idTag":"T","call_unique_id":"x"}]',
    '[2,"kw3","Authorize",{"idToken":{"idToken":"T","type":"Central"},"self":"x"}]',
    '[3,"never-sent",{}]',
    '[4,"never-sent","GenericError","",{}]',
    "[3]",
    "[4]",
    '[3,null,{"status":"Accepted"}]',
    '[5,"x"]',
    "[]",
    "{}",
    "null",
    "\x00\x01\x02",
    b"\xff\xfe\x00",
    '[2,"ws","Heartbeat",{}]' + " " * 5000,
]


# -- the oracle ------------------------------------------------------------------------------


def _expected_answer_id(raw: str | bytes, version: OcppVersion) -> str | None:
    """The messageId the gateway must answer ``raw`` with, or None when it must stay silent."""
    try:
        frame = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return "-1"
    if not isinstance(frame, list) or not frame or not isinstance(frame[0], int):
        return _id_of(frame)
    if frame[0] in (3, 4):
        return None
    if frame[0] != 2 and version is V16:
        return None
    return _id_of(frame)


def _id_of(frame: Any) -> str:
    if isinstance(frame, list) and len(frame) > 1 and isinstance(frame[1], str) and frame[1]:
        return frame[1]
    return "-1"


def _check_answer(answer: Any, version: OcppVersion) -> str:
    """The answer's id, after checking it is a CALLRESULT or a CALLERROR of the version."""
    assert isinstance(answer, list) and answer and answer[0] in (3, 4), answer
    if answer[0] == 3:
        assert len(answer) == 3 and isinstance(answer[2], dict), answer
    else:
        assert len(answer) == 5, answer
        assert answer[2] in ERROR_CODES[version], answer
        assert isinstance(answer[3], str) and answer[4] == {}, answer
    assert isinstance(answer[1], str)
    return answer[1] or "-1"


@contextlib.asynccontextmanager
async def _raw(gateway, charger, version: OcppVersion) -> AsyncIterator[ClientConnection]:
    async with connect(
        charger_url(gateway, charger.ocpp_id),
        subprotocols=[version.subprotocol],  # type: ignore[list-item]
        max_size=None,
    ) as ws:
        yield ws


async def _send_and_probe(ws: ClientConnection, batch: list[str | bytes], version: OcppVersion) -> None:
    """Send ``batch`` then a Heartbeat probe; every answer before the probe's must be the expected one."""
    FIGURES["frames"] += len(batch)
    expected = Counter(i for raw in batch if (i := _expected_answer_id(raw, version)) is not None)
    probe = f"probe-{time.monotonic_ns()}"
    for raw in batch:
        await ws.send(raw)
    await ws.send(json.dumps([2, probe, "Heartbeat", {}]))
    received: Counter[str] = Counter()
    while True:
        answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
        message_id = _check_answer(answer, version)
        if message_id == probe:
            assert answer[0] == 3
            break
        received[message_id] += 1
    assert received == expected, (batch, received, expected)


class Observer:
    """Another charger heartbeating every 20 ms; records the slowest answer and any failure."""

    def __init__(self, cp: Any) -> None:
        self.cp = cp
        self.answered = 0
        self.slowest_s = 0.0
        self.failure: BaseException | None = None
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            while True:
                started = time.monotonic()
                await asyncio.wait_for(self.cp.call(call201.Heartbeat()), 2)
                self.slowest_s = max(self.slowest_s, time.monotonic() - started)
                self.answered += 1
                await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.failure = exc

    async def stop(self) -> None:
        assert self.failure is None, f"the other charger was affected: {self.failure!r}"
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        assert self.answered > 0 and self.slowest_s < 1.0, (self.answered, self.slowest_s)
        FIGURES["observer heartbeats"] += self.answered


@pytest.fixture
async def fuzz_target(start_gateway, seed_charger, registry, caplog):
    """A gateway, a charger to fuzz with, and an observer charger heartbeating throughout."""
    caplog.set_level(logging.WARNING)
    gateway = await start_gateway(gateway_max_frame_bytes=MAX_FRAME, gateway_charger_frames_per_s=0)
    target, other = seed_charger(), seed_charger()
    async with charger_session(gateway, other, V201) as cp:
        await wait_held(gateway, other, registry)
        observer = Observer(cp)
        yield gateway, target
        await observer.stop()
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("evreserve_gateway")]
    FIGURES["findings (errors logged)"] += len(failures)
    assert failures == [], [r.getMessage() for r in failures]
    print(f"\nfuzz figures: {dict(FIGURES)}")


@pytest.mark.parametrize("version", [V16, V201])
async def test_hostile_frames_get_ocpp_j_answers(fuzz_target, version):
    """Hand-made hostile frames each get their OCPP-J answer (or silence) and the connection stays."""
    gateway, target = fuzz_target
    wrong: list[str] = []
    async with _raw(gateway, target, version) as ws:
        for raw in HOSTILE:
            try:
                await _send_and_probe(ws, [raw], version)
            except AssertionError as error:
                wrong.append(f"{raw[:60]!r}: {str(error)[-200:]}")
    FIGURES["findings (wrong answers)"] += len(wrong)
    assert wrong == []


@pytest.mark.parametrize("version", [V16, V201])
async def test_random_frames_get_ocpp_j_answers(fuzz_target, version):
    """Hypothesis-generated frames (invalid JSON, wrong types, unknown actions and types, stray answers)."""
    gateway, target = fuzz_target

    loop = asyncio.get_running_loop()

    async with _raw(gateway, target, version) as ws:
        # Hypothesis drives examples synchronously: it runs in a thread and hands each
        # example to this test's loop, where the connection lives.
        @settings(
            max_examples=300,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(batch=st.lists(frames, min_size=1, max_size=8))
        def run(batch: list[str | bytes]) -> None:
            asyncio.run_coroutine_threadsafe(_send_and_probe(ws, batch, version), loop).result(30)

        await asyncio.to_thread(run)
    assert FIGURES["frames"] >= 300


async def test_oversized_frame_closes_only_that_connection_with_1009(fuzz_target):
    """A frame over GATEWAY_MAX_FRAME_BYTES closes that connection with 1009; the charger reconnects and works."""
    gateway, target = fuzz_target
    async with _raw(gateway, target, V16) as ws:
        await ws.send('[2,"big","DataTransfer",{"vendorId":"x","data":"' + "x" * (MAX_FRAME + 1) + '"}]')
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1009
    FIGURES["frames"] += 1
    async with _raw(gateway, target, V16) as ws:
        await _send_and_probe(ws, ['[2,"after","Heartbeat",{}]'], V16)


# -- floods ---------------------------------------------------------------------------------


async def test_flood_of_calls_is_refused_then_closed_and_others_are_unaffected(start_gateway, seed_charger, registry):
    """Over its budget a charger's CALLs get GenericError; flooding on gets it closed with 1008, and only it."""
    gateway = await start_gateway(gateway_charger_frames_per_s=5, gateway_charger_frame_burst=10)
    flooder, other = seed_charger(), seed_charger()
    async with charger_session(gateway, other, V201) as cp:
        await wait_held(gateway, other, registry)
        answered = 0
        async with _raw(gateway, flooder, V16) as ws:
            for n in range(100):
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(f'[2,"f{n}","Heartbeat",{{}}]')
            kinds: Counter[str] = Counter()
            with contextlib.suppress(ConnectionClosed):
                while True:
                    answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    kinds["result" if answer[0] == 3 else answer[2]] += 1
            assert ws.close_code == 1008
        FIGURES["frames"] += 100
        assert 10 <= kinds["result"] <= 12, kinds
        assert kinds["GenericError"] == 10, kinds
        for _ in range(20):  # the other charger, at a charger's pace, is answered every time
            await cp.call(call201.Heartbeat())
            answered += 1
        assert answered == 20


async def test_burst_within_budget_is_answered(start_gateway, seed_charger):
    """A boot-time burst up to the budget (BootNotification, a StatusNotification per connector) is all answered."""
    gateway = await start_gateway(gateway_charger_frames_per_s=1, gateway_charger_frame_burst=30)
    charger = seed_charger()
    async with _raw(gateway, charger, V16) as ws:
        batch = [
            f'[2,"s{n}","StatusNotification",{{"connectorId":1,"errorCode":"NoError","status":"Available"}}]'
            for n in range(29)
        ]
        await _send_and_probe(ws, batch, V16)
