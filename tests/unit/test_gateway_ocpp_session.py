"""The OCPP-J session over an in-memory connection: framing, error codes, outgoing CALLs."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from evreserve.access_ids import Group, TokenStatus, Verdict
from evreserve.models import OcppVersion
from evreserve_gateway.charger_socket import finish
from evreserve_gateway.protocol import (
    CallErrorReply,
    CallResultReply,
    SessionClosed,
    new_session,
    use_inline_validation,
)
from evreserve_gateway.protocol.framing import error_code_for

use_inline_validation()


class FakeConnection:
    def __init__(self) -> None:
        self.sent: asyncio.Queue[list] = asyncio.Queue()

    async def send(self, message: str) -> None:
        await self.sent.put(json.loads(message))


class FakeEvents:
    def __init__(self, group: Group | None = None, lookup_delay_s: float = 0.0, status=TokenStatus.ACCEPTED) -> None:
        self.boots: list = []
        self.statuses: list = []
        self.ended: list = []
        self._verdict = Verdict(status, group)
        self._delay = lookup_delay_s
        self.presented: list[str] = []
        self.used_on: list[int | None] = []

    def record_boot(self, boot):
        self.boots.append(boot)

    def record_port_status(self, port_number, status):
        self.statuses.append((port_number, status))

    def record_reservation_used(self, reservation_id, port_number=None):
        self.ended.append((reservation_id, "Used"))
        self.used_on.append(port_number)

    def record_reservation_status_update(self, reservation_id, update_status):
        self.ended.append((reservation_id, update_status))

    async def authorize(self, id_tag):
        self.presented.append(id_tag)
        await asyncio.sleep(self._delay)
        return self._verdict

    def new_transaction_id(self):
        return 42


def _session(version=OcppVersion.V16, events=None):
    connection = FakeConnection()
    logger = logging.LoggerAdapter(logging.getLogger("test"), {})
    return new_session(version, "CP-1", connection, events or FakeEvents(), logger, 60), connection


async def _route(session, raw):
    """A frame handled to the end, as the charger's socket runs it (ChargerSocket.serve)."""
    pending = session.take_frame(raw)
    if pending is not None:
        await finish(pending, session.frame_failed)


async def test_heartbeat_is_answered_with_the_time():
    """A Heartbeat gets a CALLRESULT with currentTime."""
    session, connection = _session()
    await _route(session, '[2,"a","Heartbeat",{}]')
    answer = connection.sent.get_nowait()
    assert answer[:2] == [3, "a"] and answer[2]["currentTime"].endswith("Z")


async def test_boot_notification_reports_and_answers_interval():
    """BootNotification is reported to the events and answered with the configured interval."""
    events = FakeEvents()
    session, connection = _session(events=events)
    await _route(session, '[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]')
    answer = connection.sent.get_nowait()
    assert (answer[2]["status"], answer[2]["interval"]) == ("Accepted", 60)
    assert (events.boots[0].vendor, events.boots[0].model) == ("V", "M")


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("not json", [4, "-1", "FormationViolation"]),
        ('{"a":1}', [4, "-1", "FormationViolation"]),
        ('[2,"c","Heartbeat"]', [4, "c", "FormationViolation"]),
        ('[2,"c","BootNotification",{"chargePointVendor":"V"}]', [4, "c", "ProtocolError"]),
        ('[2,"c","Heartbeat",{"x":1}]', [4, "c", "FormationViolation"]),
    ],
)
async def test_v16_malformed_frames_get_1_6_codes(frame, expected):
    """1.6 frames that are not valid OCPP-J get 1.6's codes (FormationViolation, not FormatViolation)."""
    session, connection = _session()
    await _route(session, frame)
    assert connection.sent.get_nowait()[:3] == expected


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ('[2,"m","MeterValues",{"connectorId":1}]', [4, "m", "ProtocolError"]),
        ('[2,"m","MeterValues",{"connectorId":"1","meterValue":[]}]', [4, "m", "TypeConstraintViolation"]),
        (
            '[2,"m","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Fine"}]',
            [4, "m", "FormationViolation"],
        ),
    ],
)
async def test_v16_directly_answered_calls_are_validated(frame, expected):
    """MeterValues and StatusNotification, answered without the library, are still refused when invalid."""
    events = FakeEvents()
    session, connection = _session(events=events)
    await _route(session, frame)
    assert connection.sent.get_nowait()[:3] == expected
    assert events.statuses == []


async def test_status_notification_is_reported_and_answered_empty():
    """A valid 2.0.1 StatusNotification reaches the events with its EVSE and gets an empty CALLRESULT."""
    events = FakeEvents()
    session, connection = _session(OcppVersion.V201, events=events)
    frame = {"timestamp": "2026-11-23T10:00:00Z", "connectorStatus": "Occupied", "evseId": 2, "connectorId": 1}
    await _route(session, json.dumps([2, "s", "StatusNotification", frame]))
    assert connection.sent.get_nowait() == [3, "s", {}]
    assert [(port, status.status) for port, status in events.statuses] == [(2, "Occupied")]


async def test_v16_unknown_message_type_is_ignored():
    """OCPP-J 1.6: a frame with an unknown messageTypeId is ignored."""
    session, connection = _session()
    await _route(session, '[9,"d"]')
    assert connection.sent.empty()


async def test_v201_unparseable_frame_gets_rpc_framework_error():
    """2.0.1: a frame that is not an OCPP-J message gets RpcFrameworkError."""
    session, connection = _session(OcppVersion.V201)
    await _route(session, "[]")
    assert connection.sent.get_nowait()[:3] == [4, "-1", "RpcFrameworkError"]


def test_error_code_spelling_per_version():
    """The library's 2.0.1 spellings become 1.6's and back."""
    assert error_code_for(OcppVersion.V16, "FormatViolation") == "FormationViolation"
    assert error_code_for(OcppVersion.V16, "OccurrenceConstraintViolation") == "OccurenceConstraintViolation"
    assert error_code_for(OcppVersion.V201, "FormationViolation") == "FormatViolation"
    assert error_code_for(OcppVersion.V201, "NotSupported") == "NotSupported"


async def test_call_result_answers_the_pending_call():
    """send_call returns the charger's CALLRESULT payload for the matching message id."""
    session, connection = _session()
    pending = asyncio.create_task(session.send_call("CancelReservation", {"reservationId": 1}))
    sent = await connection.sent.get()
    assert sent[2:] == ["CancelReservation", {"reservationId": 1}]
    await _route(session, json.dumps([3, sent[1], {"status": "Accepted"}]))
    assert await pending == CallResultReply({"status": "Accepted"})


async def test_call_error_with_unknown_code_is_passed_through():
    """A CALLERROR code the library does not know (2.0.1 RpcFrameworkError) is still reported as such."""
    session, connection = _session(OcppVersion.V201)
    pending = asyncio.create_task(session.send_call("CancelReservation", {"reservationId": 1}))
    sent = await connection.sent.get()
    await _route(session, json.dumps([4, sent[1], "RpcFrameworkError", "bad", {}]))
    assert await pending == CallErrorReply("RpcFrameworkError", "bad")


async def test_invalid_answer_becomes_a_call_error():
    """An answer that breaks the schema is reported as a CALLERROR with the violation, not returned."""
    session, connection = _session()
    pending = asyncio.create_task(session.send_call("CancelReservation", {"reservationId": 1}))
    sent = await connection.sent.get()
    await _route(session, json.dumps([3, sent[1], {"status": "Maybe"}]))
    reply = await pending
    assert isinstance(reply, CallErrorReply) and reply.code == "FormatViolation"


async def test_close_fails_the_pending_call_at_once():
    """Closing the session wakes the pending call with SessionClosed instead of letting it time out."""
    session, connection = _session()
    pending = asyncio.create_task(session.send_call("CancelReservation", {"reservationId": 1}))
    await connection.sent.get()
    session.close()
    with pytest.raises(SessionClosed):
        await asyncio.wait_for(pending, 1)


async def test_late_answer_is_ignored():
    """An answer for no pending call does not disturb the next call."""
    session, connection = _session()
    await _route(session, '[3,"stale",{"status":"Accepted"}]')
    pending = asyncio.create_task(session.send_call("CancelReservation", {"reservationId": 1}))
    sent = await connection.sent.get()
    await _route(session, json.dumps([3, sent[1], {"status": "Rejected"}]))
    assert await pending == CallResultReply({"status": "Rejected"})


async def test_slow_authorize_does_not_hold_up_answers_to_our_calls():
    """While Authorize waits on storage, the charger's answer to our CALL is still read."""
    session, connection = _session(events=FakeEvents(Group("G", "Central"), lookup_delay_s=0.2))
    pending = asyncio.create_task(session.send_call("CancelReservation", {"reservationId": 1}))
    sent = await connection.sent.get()
    await _route(session, '[2,"auth","Authorize",{"idTag":"T"}]')
    await _route(session, json.dumps([3, sent[1], {"status": "Accepted"}]))
    assert await asyncio.wait_for(pending, 0.1) == CallResultReply({"status": "Accepted"})
    answer = await asyncio.wait_for(connection.sent.get(), 1)
    assert answer == [3, "auth", {"idTagInfo": {"status": "Accepted", "parentIdTag": "G"}}]


async def test_calls_after_a_slow_one_are_answered_in_order():
    """A Heartbeat and a MeterValues sent while Authorize is pending are answered after it, in order."""
    session, connection = _session(events=FakeEvents(lookup_delay_s=0.05))
    await _route(session, '[2,"auth","Authorize",{"idTag":"T"}]')
    await _route(session, '[2,"hb","Heartbeat",{}]')
    await _route(session, '[2,"mv","MeterValues",{"connectorId":1,"meterValue":[]}]')
    answers = [await asyncio.wait_for(connection.sent.get(), 1) for _ in range(3)]
    assert [answer[1] for answer in answers] == ["auth", "hb", "mv"]
    assert answers[2][0] == 4  # an empty meterValue breaks the schema: refused, in its turn


def test_frame_budget_allows_a_burst_then_the_rate():
    """The bucket lets a burst through at once, then refills at the rate, never beyond the burst."""
    from evreserve_gateway.protocol.framing import FrameBudget

    now = [0.0]
    budget = FrameBudget(rate=2.0, burst=3, clock=lambda: now[0])
    assert [budget.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5
    assert [budget.take() for _ in range(2)] == [True, False]
    now[0] += 100.0
    assert sum(budget.take() for _ in range(10)) == 3


@pytest.mark.parametrize("version", [OcppVersion.V16, OcppVersion.V201])
async def test_library_frame_lines_stay_out_of_the_log(version, caplog):
    """The ocpp library's per-frame INFO lines (payloads, an Authorize answer's group token) are not
    logged; the session's own INFO lines are, with the charger's identity."""
    caplog.set_level(logging.DEBUG)
    events = FakeEvents(group=Group("FLEET-SECRET-77", "Central"))
    connection = FakeConnection()
    logger = logging.LoggerAdapter(logging.getLogger("evreserve_gateway.ocpp"), {"charger": "CP-1"})
    session = new_session(version, "CP-1", connection, events, logger, 60)
    token = '{"idTag":"T-1"}' if version is OcppVersion.V16 else '{"idToken":{"idToken":"T-1","type":"Central"}}'
    await _route(session, f'[2,"a","Authorize",{token}]')
    answer = await asyncio.wait_for(connection.sent.get(), 2)
    assert "FLEET-SECRET-77" in json.dumps(answer)  # the charger gets the group
    event = '{"type":"SettingSystemTime","timestamp":"2026-01-01T00:00:00Z"}'
    await _route(session, f'[2,"b","SecurityEventNotification",{event}]')
    await asyncio.wait_for(connection.sent.get(), 2)
    assert not [r for r in caplog.records if "FLEET-SECRET-77" in r.getMessage()]
    assert [r for r in caplog.records if r.getMessage() == "security event" and r.levelno == logging.INFO]


class SlowWriter(FakeConnection):
    """A connection whose send writes the frame, then waits for the socket to drain."""

    async def send(self, message: str) -> None:
        await self.sent.put(json.loads(message))
        await asyncio.sleep(10)


async def test_call_cancelled_while_its_frame_is_written_still_hears_the_late_answer():
    """A ReserveNow whose send is cut short by the deadline may be on the wire already: if the
    charger answers, the late handler hears it (and can undo it)."""
    connection = SlowWriter()
    session = new_session(
        OcppVersion.V16, "CP-1", connection, FakeEvents(), logging.LoggerAdapter(logging.getLogger("t"), {}), 60
    )
    late: list = []
    payload = {"connectorId": 1, "expiryDate": "2030-01-01T00:00:00Z", "idTag": "T", "reservationId": 1}
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await session.send_call("ReserveNow", payload, late.append)
    frame = connection.sent.get_nowait()
    await _route(session, json.dumps([3, frame[1], {"status": "Accepted"}]))
    assert late == [CallResultReply({"status": "Accepted"})]


# -- what a charger is told about a token -----------------------------------------------------

START_16 = '{"connectorId":1,"idTag":"Card-7","meterStart":0,"timestamp":"2026-01-01T00:00:00Z","reservationId":5}'
EVENT_201 = (
    '{"eventType":"Started","timestamp":"2026-01-01T00:00:00Z","triggerReason":"Authorized","seqNo":0,'
    '"transactionInfo":{"transactionId":"t1"},"reservationId":5,"evse":{"id":1,"connectorId":1},"idToken":{"idToken":"Card-7","type":"ISO14443"}}'
)


@pytest.mark.parametrize(
    ("verdict", "v16", "v201"),
    [
        (
            Verdict(TokenStatus.ACCEPTED, Group("FLEET", "Central")),
            {"status": "Accepted", "parentIdTag": "FLEET"},
            {"status": "Accepted", "groupIdToken": {"idToken": "FLEET", "type": "Central"}},
        ),
        (Verdict(TokenStatus.BLOCKED), {"status": "Blocked"}, {"status": "Blocked"}),
        (Verdict(TokenStatus.INVALID), {"status": "Invalid"}, {"status": "Invalid"}),
    ],
)
async def test_the_tokens_verdict_answers_authorize_and_the_start_of_a_transaction(verdict, v16, v201):
    """Authorize, 1.6 StartTransaction and 2.0.1 TransactionEvent carry the verdict on the presented token;
    the reservation the transaction names is used up whatever the verdict (the charger ended it)."""
    for version, calls, info in (
        (OcppVersion.V16, [("Authorize", '{"idTag":"Card-7"}'), ("StartTransaction", START_16)], "idTagInfo"),
        (
            OcppVersion.V201,
            [("Authorize", '{"idToken":{"idToken":"Card-7","type":"ISO14443"}}'), ("TransactionEvent", EVENT_201)],
            "idTokenInfo",
        ),
    ):
        events = FakeEvents(verdict.group, status=verdict.status)
        session, connection = _session(version, events)
        for n, (action, payload) in enumerate(calls):
            await _route(session, f'[2,"c{n}","{action}",{payload}]')
            answer = await asyncio.wait_for(connection.sent.get(), 2)
            assert answer[0] == 3, answer
            assert answer[2][info] == (v16 if version is OcppVersion.V16 else v201), (version, action)
        assert events.presented == ["Card-7", "Card-7"]
        assert events.ended == [(5, "Used")] and events.used_on == [1]  # the connector / EVSE it started on


async def test_a_transaction_event_without_a_token_asks_for_no_verdict():
    """2.0.1 TransactionEvent Updated/Ended without idToken: an empty answer, no lookup."""
    events = FakeEvents()
    session, connection = _session(OcppVersion.V201, events)
    payload = (
        '{"eventType":"Updated","timestamp":"2026-01-01T00:00:00Z","triggerReason":"MeterValuePeriodic",'
        '"seqNo":1,"transactionInfo":{"transactionId":"t1"}}'
    )
    await _route(session, f'[2,"u","TransactionEvent",{payload}]')
    assert await asyncio.wait_for(connection.sent.get(), 2) == [3, "u", {}]
    assert events.presented == []
