"""The OCPP message log's packing and its newest-first listing across batches (pure)."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta

import pytest

from evreserve.aws import ClientError
from evreserve.errors import InvalidRequest
from evreserve.messagelog import (
    MAX_PAGE_CHARS,
    SPAN_MAX_MS,
    Direction,
    LoggedMessage,
    MessageQuery,
    Position,
    StoredBatch,
    message_query,
    messages_of,
    newest_first,
    pack,
    unpack,
)
from evreserve.storage.messages import Batch, MessageLogStore

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_a_batch_keeps_each_frame_and_answer_as_sent():
    """Packing keeps the charger's own text: its payload, our CALLRESULT, a CALLERROR's three fields, a null."""
    records = [
        (1, 0, "Heartbeat", '[2, "a",\n "Heartbeat", {}]', '[3,"a",{"currentTime":"2026-12-06T00:00:00.000Z"}]'),
        (2, 1, "ReserveNow", '[2,"b","ReserveNow",{"id":1}]', '[4,"b","NotSupported","no",{"x":1}]'),
        (3, 1, "CancelReservation", '[2,"c","CancelReservation",{"reservationId":1}]', None),
    ]
    messages = messages_of("B", pack(records), ocpp_id="CP-1", protocol="ocpp2.0.1")
    assert [(m.id, m.at_ms, m.direction, m.action) for m in messages] == [
        ("B-0", 1, Direction.FROM_CHARGER, "Heartbeat"),
        ("B-1", 2, Direction.TO_CHARGER, "ReserveNow"),
        ("B-2", 3, Direction.TO_CHARGER, "CancelReservation"),
    ]
    assert messages[0].response == {"currentTime": "2026-12-06T00:00:00.000Z"}
    assert messages[1].payload == {"id": 1}
    assert messages[1].response == {"errorCode": "NotSupported", "errorDescription": "no", "errorDetails": {"x": 1}}
    assert messages[2].response is None
    assert {(m.ocpp_id, m.protocol) for m in messages} == {("CP-1", "ocpp2.0.1")}


def test_a_frame_nested_past_what_readers_parse_spoils_only_itself():
    """A charger's deeply nested payload is shown as a note; its batch's other messages read as usual."""
    deep = "[" * 5000 + "]" * 5000
    deep_call = f'[2,"d","DataTransfer",{{"vendorId":"V","data":{deep}}}]'
    records = [
        (1, 0, "DataTransfer", deep_call, '[4,"d","FormationViolation","payload is nested too deeply",{}]'),
        (
            2,
            0,
            "DataTransfer",
            f'[2,"e","DataTransfer",{{"x":{"[" * 40 + "]" * 40}}}]',
            f'[3,"e",{{"y":{"[" * 40 + "]" * 40}}}]',
        ),
        (3, 0, "Heartbeat", '[2,"f","Heartbeat",{}]', '[3,"f",{"currentTime":"t"}]'),
    ]
    too_deep, nested, fine = messages_of("B", pack(records))
    assert too_deep.action == "" and too_deep.payload == {"logged": False, "reason": "the frame cannot be parsed"}
    assert too_deep.response["errorCode"] == "FormationViolation"
    assert nested.action == "DataTransfer" and nested.payload["logged"] is False
    assert nested.response == {"logged": False, "reason": "nested deeper than 32 levels"}
    assert (fine.action, fine.response) == ("Heartbeat", {"currentTime": "t"})


def test_the_dictionary_makes_small_batches_small():
    """Five Heartbeats and their answers pack into well under a fifth of their text."""
    records = [
        (i, 0, "Heartbeat", f'[2,"{i:08d}-aaaa","Heartbeat",{{}}]', f'[3,"{i:08d}-aaaa",{{"currentTime":"x"}}]')
        for i in range(5)
    ]
    text = sum(len(r[3]) + len(r[4]) for r in records)
    assert len(pack(records)) < text / 3
    assert len(unpack(pack(records))) == 5


def test_an_unknown_packing_is_refused():
    with pytest.raises(ValueError, match="format"):
        unpack(b"", version=2)


# -- the listing --------------------------------------------------------------------------


def _batches(spec: list[tuple[str, list[int]]]) -> list[StoredBatch]:
    """Stored batches from (batch id, message times), sorted as the table returns them."""
    stored = []
    for batch_id, times in spec:
        messages = [
            LoggedMessage(f"{batch_id}-{i}", t, Direction.FROM_CHARGER, "Heartbeat" if t % 2 else "MeterValues", {}, {})
            for i, t in enumerate(times)
        ]
        stored.append(StoredBatch(max(times), min(times), lambda m=messages: m))
    return sorted(stored, key=lambda b: b.newest_ms, reverse=True)


def _query(limit: int = 50, **kwargs: object) -> MessageQuery:
    base = {"start": datetime.fromtimestamp(0, UTC), "end": datetime.fromtimestamp(10_000, UTC)}
    return MessageQuery(1, **{**base, **kwargs}, limit=limit)  # type: ignore[arg-type]


def _all_pages(batches: list[StoredBatch], query: MessageQuery) -> list[list[str]]:
    pages, after = [], None
    for _ in range(100):
        current = MessageQuery(query.charger_id, query.start, query.end, query.types, query.limit, after)
        # As the table would: only batches keyed within the query's bounds.
        keyed = [b for b in batches if current.start_ms <= b.newest_ms <= current.end_ms + SPAN_MAX_MS]
        page = newest_first(current, iter(keyed))
        pages.append([m.id for m in page.items])
        if page.next_position is None:
            return pages
        after = Position.decode(page.next_position.encode())
    raise AssertionError("the listing did not end")


def test_overlapping_batches_are_merged_newest_first_across_pages():
    """A batch keyed later may hold older messages (a CALL logged when its answer came): the order is still exact."""
    batches = _batches([("a", [100, 500]), ("b", [200, 300, 450]), ("c", [50, 120, 600])])
    pages = _all_pages(batches, _query(limit=2))
    flat = [i for p in pages for i in p]
    by_id = {m.id: m.at_ms for b in batches for m in b.messages()}
    assert [by_id[i] for i in flat] == [600, 500, 450, 300, 200, 120, 100, 50]
    assert [len(p) for p in pages] == [2, 2, 2, 2]


def test_random_batches_list_every_message_once_in_order():
    """Any batches within the span bound: every message in range exactly once, newest first, ties by id."""
    rng = random.Random(7)
    spec = []
    for b in range(40):
        start = rng.randrange(0, 9000)
        spec.append((f"b{b:02d}", [start + rng.randrange(0, 900) for _ in range(rng.randrange(1, 6))]))
    batches = _batches(spec)
    query = _query(limit=7, start=datetime.fromtimestamp(1, UTC), end=datetime.fromtimestamp(8, UTC))
    flat = [i for p in _all_pages(batches, query) for i in p]
    everything = [m for b in batches for m in b.messages() if 1000 <= m.at_ms <= 8000]
    expected = [m.id for m in sorted(everything, key=lambda m: (m.at_ms, m.id), reverse=True)]
    assert flat == expected


def test_a_type_filter_and_the_range_are_applied_to_the_messages():
    batches = _batches([("a", [1000, 1001, 2000, 2001, 3001])])
    query = _query(types=frozenset({"Heartbeat"}), end=datetime.fromtimestamp(2.5, UTC))
    assert [m.at_ms for m in newest_first(query, iter(batches)).items] == [2001, 1001]


def test_a_page_reads_only_the_batches_it_needs():
    """Newest first means the first page of a long log reads its first batches, not all of them."""
    batches = _batches([(f"b{i}", [i * 10, i * 10 + 1]) for i in range(1, 500)])
    page = newest_first(_query(limit=3), iter(batches))
    assert [m.at_ms for m in page.items] == [4991, 4990, 4981]
    assert page.read <= 4


def test_a_page_that_decodes_too_much_ends_early_and_resumes_exactly():
    batches = _batches([(f"b{i}", [i * 10]) for i in range(1, 30)])
    first = newest_first(_query(limit=50), iter(batches), max_decoded=5)
    assert first.next_position is not None and 0 < len(first.items) < 29
    rest = [b for b in batches if b.newest_ms < first.next_position.at_ms]
    second = newest_first(_query(limit=50, after=first.next_position), iter(rest))
    assert [m.at_ms for m in first.items + second.items] == [i * 10 for i in range(29, 0, -1)]


# -- the request's rules -------------------------------------------------------------------


def test_the_range_defaults_to_the_last_24_hours():
    query = message_query(1, now=NOW, start=None, end=None)
    assert (query.start, query.end) == (NOW - timedelta(hours=24), NOW)
    only_start = message_query(1, now=NOW, start=NOW - timedelta(days=3), end=None)
    assert only_start.end == NOW - timedelta(days=2)


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        (NOW - timedelta(days=8), NOW, "startTimestamp"),
        (NOW, NOW - timedelta(seconds=1), "startTimestamp"),
        (datetime(2026, 12, 1), None, "startTimestamp"),
    ],
)
def test_bad_ranges_are_refused(start, end, field):
    with pytest.raises(InvalidRequest) as raised:
        message_query(1, now=NOW, start=start, end=end)
    assert raised.value.details["field"] == field


def test_a_range_just_under_8_days_is_accepted():
    query = message_query(1, now=NOW, start=NOW - timedelta(days=8) + timedelta(milliseconds=1), end=NOW)
    assert query.end - query.start < timedelta(days=8)


@pytest.mark.parametrize("types", [["Heart beat"], ["x" * 65], [f"A{i}" for i in range(21)]])
def test_bad_message_types_are_refused(types):
    with pytest.raises(InvalidRequest):
        message_query(1, now=NOW, start=None, end=None, types=types)


@pytest.mark.parametrize("cursor", ["%%%", "bm90IGEgY3Vyc29y", Position(5, "x").encode()[:-3] + "AAA", "bTEuLTEueA"])
def test_forged_cursors_are_refused(cursor):
    with pytest.raises(InvalidRequest) as raised:
        message_query(1, now=NOW, start=None, end=None, cursor=cursor)
    assert raised.value.details["field"] == "nextPageCursor"


def test_a_cursor_round_trips():
    position = Position(1733400000123, "abc-7")
    assert Position.decode(position.encode()) == position
    assert position.encode().isascii() and "=" not in position.encode()


def test_a_cursor_with_non_ascii_digits_is_refused_not_a_crash():
    """ "²" passes str.isdigit() but not int(): 400, not 500."""
    cursor = base64.urlsafe_b64encode("m1.².x".encode()).decode().rstrip("=")
    with pytest.raises(InvalidRequest):
        Position.decode(cursor)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (datetime(9999, 12, 31, 12, tzinfo=UTC), None),
        (None, datetime(1, 1, 1, tzinfo=UTC)),
        (datetime(1960, 1, 1, tzinfo=UTC), None),
    ],
)
def test_timestamps_outside_the_service_years_are_refused(start, end):
    with pytest.raises(InvalidRequest):
        message_query(1, now=NOW, start=start, end=end)


def test_a_page_ends_early_on_its_size_and_resumes_exactly():
    """Big frames: a page stops at MAX_PAGE_CHARS however high the limit, and the next one goes on from there."""
    big = 30_000
    messages = [
        LoggedMessage(f"b-{i}", 1000 + i, Direction.FROM_CHARGER, "DataTransfer", {}, {}, size=big) for i in range(40)
    ]
    batches = [StoredBatch(1039, 1000, lambda: messages)]
    query = _query(limit=500)
    first = newest_first(query, iter(batches))
    assert 0 < len(first.items) < 40 and sum(m.size for m in first.items) <= MAX_PAGE_CHARS
    got, after = list(first.items), first.next_position
    while after is not None:
        page = newest_first(MessageQuery(1, query.start, query.end, limit=500, after=after), iter(batches))
        assert sum(m.size for m in page.items) <= MAX_PAGE_CHARS
        got += page.items
        after = page.next_position
    assert [m.at_ms for m in got] == list(range(1039, 999, -1))


def test_a_cursor_older_than_the_range_reads_nothing():
    """The default range moved past an old cursor: an empty page, and no query with reversed bounds."""

    class NoClient:
        def query(self, **kwargs: object) -> None:
            raise AssertionError("queried")

    store = MessageLogStore(NoClient(), "t")  # type: ignore[arg-type]
    query = message_query(1, now=NOW, start=None, end=None, cursor=Position(_ms_of(NOW - timedelta(hours=30))).encode())
    assert store.page(7, query).items == []


def _ms_of(value: datetime) -> int:
    return int(value.timestamp() * 1000)


class _Client:
    """batch_write_item as DynamoDB answers it: a request with an item over the limit fails whole."""

    def __init__(self) -> None:
        self.written: list[str] = []

    def batch_write_item(self, RequestItems: dict[str, list[dict[str, object]]]) -> dict[str, object]:
        (requests,) = RequestItems.values()
        keys = [r["PutRequest"]["Item"]["sk"]["S"] for r in requests]  # type: ignore[index]
        if any(k.endswith("#bad") for k in keys):
            error = {"Error": {"Code": "ValidationException", "Message": "Item size has exceeded the maximum"}}
            raise ClientError(error, "BatchWriteItem")  # type: ignore[arg-type]
        self.written += keys
        return {"UnprocessedItems": {}}


def test_one_item_dynamodb_rejects_never_holds_back_the_others():
    """An invalid item fails its whole request: the others are written one by one, the bad one reported."""
    client = _Client()
    store = MessageLogStore(client, "t")  # type: ignore[arg-type]
    record = (1, 0, "Heartbeat", '[2,"a","Heartbeat",{}]', '[3,"a",{}]')
    batches = [Batch(name, 1, 1, "A", "ocpp1.6", [record]) for name in ("ok1", "bad", "ok2")]
    assert store.put(batches) == ["bad"]
    assert sorted(k.split("#")[1] for k in client.written) == ["ok1", "ok2"]
