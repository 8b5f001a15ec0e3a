"""The OCPP message log: the home of how logged frames are packed, and read back newest first.

The gateway logs every CALL in both directions with its answer. One DynamoDB item per
message would cost several times the budget (docs/scaling.md), so a charger's messages
are packed into batches: one item per charger and flush (``storage.messages``), the
frames compressed together with a preset dictionary of OCPP's own vocabulary, so even a
batch of a few Heartbeats compresses well.

A batch is its records one after the other, each a header line ``atMs direction callLength
answerLength\n`` (lengths in characters; -1: no answer) and the two frames' text, exactly as
they went over the wire (the charger's own text for its CALLs). So the log shows what was
sent; packing is a join, not a serialisation (the gateway never re-encodes a charger's
payload to log it); and each frame is parsed on its own when read: one hostile frame (nested
past what a reader can parse) spoils only itself, not its batch.

Reading newest first across batches (``newest_first``): batches are keyed by their newest
message and span at most ``SPAN_MAX_MS``, so a message at ``t`` is in a batch keyed at most
``t + SPAN_MAX_MS``; a message is final once every batch keyed above it has been read.

Pure: no I/O, no AWS.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import itertools
import json
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any, Final

from .errors import InvalidRequest

#: The packing of ``v`` = 1: zlib (raw deflate) with ``ZDICT_V1``. Never change either:
#: stored batches are read with them for their whole retention; a new packing is v2.
FORMAT_V1: Final = 1
#: The longest a batch may span between its oldest and newest message. The gateway
#: hands a batch over once its oldest message is ``GATEWAY_MESSAGE_LOG_FLUSH_S`` old
#: (at most 900 s, settings check) and a CALL is logged at most a command's timeout
#: after it was sent, so 30 minutes bounds every batch with a wide margin.
SPAN_MAX_MS: Final = 30 * 60 * 1000
#: Ranges of this length or more are refused (the API family's rule: under 8 days).
MAX_RANGE: Final = timedelta(days=8)
DEFAULT_RANGE: Final = timedelta(hours=24)
DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 500
#: An OCPP action name, as a filter value.
ACTION_PATTERN: Final = re.compile(r"^[A-Za-z0-9]{1,64}$")
#: Filter values one request may give.
MAX_TYPES: Final = 20
#: Frame characters one page may hold: with JSON's escapes (up to 6 bytes a character) a
#: page stays under Lambda's 6 MB response, whatever the chargers sent.
MAX_PAGE_CHARS: Final = 500_000
#: The instants a range may name; outside them a datetime's arithmetic overflows, and
#: nothing was logged before the service existed.
EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2100, 1, 1, tzinfo=UTC)

# Frames as chargers and the gateway write them, most frequent last (zlib prefers the end
# of a preset dictionary). Only the words matter, not the values.
ZDICT_V1: Final = (
    b'"errorDetails":{}]"GenericError","InternalError","NotImplemented","NotSupported","FormationViolation",'
    b'"FormatViolation","PropertyConstraintViolation","OccurrenceConstraintViolation","TypeConstraintViolation"'
    b'[2,"","DataTransfer",{"vendorId":"","messageId":"","data":""}]'
    b'[2,"","NotifyEvent",{"generatedAt":"","seqNo":0,"tbc":false,"eventData":[{"eventId":1,"timestamp":"",'
    b'"trigger":"Delta","actualValue":"","eventNotificationType":"HardWiredNotification","component":{"name":""},'
    b'"variable":{"name":""}}]}]'
    b'[2,"","FirmwareStatusNotification",{"status":"Installed"}][2,"","DiagnosticsStatusNotification",{"status":"Idle"}]'
    b'[2,"","ReservationStatusUpdate",{"reservationId":1,"reservationUpdateStatus":"Expired"}]"Removed"'
    b'[2,"","CancelReservation",{"reservationId":1}][3,"",{"status":"Rejected"}]'
    b'[2,"","ReserveNow",{"id":1,"expiryDateTime":"","idToken":{"idToken":"","type":"Central"},"evseId":1,'
    b'"groupIdToken":{"idToken":"","type":"Central"}}]'
    b'[2,"","ReserveNow",{"connectorId":1,"expiryDate":"","idTag":"","reservationId":1,"parentIdTag":""}]'
    b'[3,"",{"status":"Accepted"}]"Faulted","Occupied","Unavailable"'
    b'[2,"","StopTransaction",{"transactionId":1,"idTag":"","meterStop":0,"timestamp":"","reason":"Local",'
    b'"transactionData":[]}][3,"",{"idTagInfo":{"status":"Accepted"}}]'
    b'[2,"","TransactionEvent",{"eventType":"Started","timestamp":"","triggerReason":"Authorized","seqNo":0,'
    b'"transactionInfo":{"transactionId":"","chargingState":"Charging","stoppedReason":"Local"},'
    b'"evse":{"id":1,"connectorId":1},"idToken":{"idToken":"","type":"ISO14443"},"reservationId":1}]'
    b'[3,"",{"idTokenInfo":{"status":"Accepted","groupIdToken":{"idToken":"","type":"Central"}}}]'
    b'[2,"","StartTransaction",{"connectorId":1,"idTag":"","meterStart":0,"reservationId":1,"timestamp":""}]'
    b'[3,"",{"transactionId":1,"idTagInfo":{"status":"Accepted","parentIdTag":""}}]'
    b'[2,"","Authorize",{"idToken":{"idToken":"","type":"ISO14443"}}][2,"","Authorize",{"idTag":""}]'
    b'[3,"",{"idTagInfo":{"status":"Accepted","parentIdTag":"","expiryDate":""}}]'
    b'[2,"","BootNotification",{"chargingStation":{"model":"","vendorName":"","serialNumber":"",'
    b'"firmwareVersion":"","modem":{"iccid":"","imsi":""}},"reason":"PowerUp"}]'
    b'[2,"","BootNotification",{"chargePointVendor":"","chargePointModel":"","chargePointSerialNumber":"",'
    b'"chargeBoxSerialNumber":"","firmwareVersion":"","iccid":"","imsi":"","meterType":"","meterSerialNumber":""}]'
    b'[3,"",{"status":"Accepted","currentTime":"","interval":300}]'
    b'[2,"","StatusNotification",{"timestamp":"","connectorStatus":"Available","evseId":1,"connectorId":1}]'
    b'[2,"","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Available","timestamp":"",'
    b'"info":"","vendorId":"","vendorErrorCode":""}]"Preparing","Charging","SuspendedEV","Finishing","Reserved"'
    b'[2,"","MeterValues",{"evseId":1,"meterValue":[{"timestamp":"","sampledValue":[{"value":0.0,'
    b'"context":"Sample.Periodic","measurand":"Energy.Active.Import.Register","unitOfMeasure":{"unit":"Wh",'
    b'"multiplier":0}}]}]}]'
    b'[2,"","MeterValues",{"connectorId":1,"transactionId":1,"meterValue":[{"timestamp":"","sampledValue":'
    b'[{"value":"","context":"Sample.Periodic","format":"Raw","measurand":"Energy.Active.Import.Register",'
    b'"location":"Outlet","unit":"Wh"},{"value":"","measurand":"Power.Active.Import","unit":"W"},'
    b'{"value":"","measurand":"Current.Import","phase":"L1","unit":"A"},{"value":"","measurand":"Voltage",'
    b'"phase":"L1-N","unit":"V"},{"value":"","measurand":"SoC","unit":"Percent"}]}]}][3,"",{}]'
    b'\n1765000000000 0 62 61\n[2,"","Heartbeat",{}][3,"",{"currentTime":"2026-12-06T00:00:00.000Z"}]'
)
#: Fast over small: level 1 packs a frame in a fifth of level 6's time, for ~9% more bytes
#: (the dictionary does most of the work on small batches).
ZLIB_LEVEL: Final = 1


class Direction(IntEnum):
    """Who sent the CALL; the API's names are ``DIRECTION_NAMES``."""

    FROM_CHARGER = 0
    TO_CHARGER = 1


DIRECTION_NAMES: Final = {Direction.FROM_CHARGER: "fromCharger", Direction.TO_CHARGER: "toCharger"}

#: One logged CALL as the gateway keeps it: (ms since the epoch, direction, its action, the
#: CALL frame, the answer frame or ``None`` when none came). The action is kept beside the
#: frame for the batch's index of actions; it is not packed twice.
Record = tuple[int, int, str, str, "str | None"]


def pack(records: Sequence[Record]) -> bytes:
    """A batch's blob: its records (header line, frames), compressed with ``ZDICT_V1``."""
    text = "".join(
        f"{at} {d} {len(call)} {-1 if answer is None else len(answer)}\n{call}{answer or ''}"
        for at, d, _, call, answer in records
    )
    packer = zlib.compressobj(ZLIB_LEVEL, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, ZDICT_V1)
    return packer.compress(text.encode("utf-8", "surrogatepass")) + packer.flush()


def unpack(blob: bytes, version: int = FORMAT_V1) -> list[tuple[int, int, str, str | None]]:
    """The records of a blob ``pack`` made: (atMs, direction, CALL text, answer text or None)."""
    if version != FORMAT_V1:
        raise ValueError(f"unknown message log format {version}")
    unpacker = zlib.decompressobj(-15, ZDICT_V1)
    text = (unpacker.decompress(blob) + unpacker.flush()).decode("utf-8", "surrogatepass")
    records: list[tuple[int, int, str, str | None]] = []
    at = 0
    while at < len(text):
        end = text.index("\n", at)
        stamp, direction, call_length, answer_length = (int(v) for v in text[at:end].split(" "))
        call_end = end + 1 + call_length
        call = text[end + 1 : call_end]
        answer = None if answer_length < 0 else text[call_end : call_end + answer_length]
        records.append((stamp, direction, call, answer))
        at = call_end + max(answer_length, 0)
    return records


@dataclass(frozen=True, slots=True)
class LoggedMessage:
    """One CALL and its answer, as the API shows it."""

    id: str
    at_ms: int
    direction: Direction
    action: str
    payload: Any
    #: The CALLRESULT's payload, the CALLERROR as ``{errorCode, errorDescription,
    #: errorDetails}``, or ``None`` when no answer came before the deadline.
    response: Any
    #: The identity the charger was connected with, and its OCPP-J subprotocol ("ocpp1.6").
    ocpp_id: str = ""
    protocol: str = ""
    #: Characters of its two frames, as stored (what a page's size is counted in).
    size: int = 0

    @property
    def created_at(self) -> datetime:
        return datetime.fromtimestamp(self.at_ms / 1000, UTC)

    @property
    def order(self) -> tuple[int, str]:
        """The listing's order key, descending: time, then id."""
        return (self.at_ms, self.id)


#: Deeper payloads are shown as a note: a reader (pydantic, a partner's JSON parser) must
#: not fail on what a charger sent. OCPP's own payloads nest under 10 levels.
MAX_DEPTH: Final = 32


def _depth_ok(value: Any, budget: int = MAX_DEPTH) -> bool:
    if budget < 0:
        return False
    if isinstance(value, dict):
        return all(_depth_ok(v, budget - 1) for v in value.values())
    if isinstance(value, list):
        return all(_depth_ok(v, budget - 1) for v in value)
    return True


def _frame(text: str | None) -> Any:
    """A logged frame's JSON value; a note in its place when it cannot be shown."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return [2, "", "", {"logged": False, "reason": "the frame cannot be parsed"}]
    if not _depth_ok(value):
        head = (
            list(itertools.takewhile(lambda v: not isinstance(v, (dict, list)), value[:4]))
            if isinstance(value, list)
            else []
        )
        return [*head, {"logged": False, "reason": f"nested deeper than {MAX_DEPTH} levels"}]
    return value


def _answer(frame: Any) -> Any:
    if not isinstance(frame, list) or len(frame) < 3:
        return None
    if frame[0] == 3:
        return frame[2]
    if frame[0] == 4:
        return {
            "errorCode": frame[2],
            "errorDescription": frame[3] if len(frame) > 3 else "",
            "errorDetails": frame[4] if len(frame) > 4 else {},
        }
    return None


def messages_of(
    batch_id: str, blob: bytes, version: int = FORMAT_V1, *, ocpp_id: str = "", protocol: str = ""
) -> list[LoggedMessage]:
    """The messages of one stored batch; message ``i`` of batch ``b`` has id ``b-i``."""
    found = []
    for i, (at, direction, call_text, answer_text) in enumerate(unpack(blob, version)):
        call = _frame(call_text)
        answer = _frame(answer_text)
        found.append(
            LoggedMessage(
                id=f"{batch_id}-{i}",
                at_ms=int(at),
                direction=Direction(direction),
                action=str(call[2]) if len(call) > 2 else "",
                payload=call[3] if len(call) > 3 else None,
                response=_answer(answer),
                ocpp_id=ocpp_id,
                protocol=protocol,
                size=len(call_text) + len(answer_text or ""),
            )
        )
    return found


# -- the listing --------------------------------------------------------------------------


_DIGITS: Final = re.compile(r"[0-9]{1,15}")


@dataclass(frozen=True, slots=True)
class Position:
    """Where a listing resumes: messages strictly older than ``(at_ms, id)``."""

    at_ms: int
    id: str = ""

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"m1.{self.at_ms}.{self.id}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> Position:
        try:
            text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            tag, at, message_id = text.split(".", 2)
            # ASCII digits only: str.isdigit() also takes "²", which int() does not.
            if tag != "m1" or not _DIGITS.fullmatch(at) or len(message_id) > 64:
                raise ValueError(text)
        except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
            raise InvalidRequest(
                "nextPageCursor is not a cursor this API issued", field="nextPageCursor", location="query"
            ) from exc
        return cls(int(at), message_id)


@dataclass(frozen=True, slots=True)
class MessageQuery:
    """A validated listing request: one charger, a range, optional actions."""

    charger_id: int
    start: datetime
    end: datetime
    types: frozenset[str] = frozenset()
    limit: int = DEFAULT_LIMIT
    after: Position | None = None

    @property
    def start_ms(self) -> int:
        return _ms(self.start)

    @property
    def end_ms(self) -> int:
        """Inclusive upper bound, lowered to the cursor's position."""
        end = _ms(self.end)
        return end if self.after is None else min(end, self.after.at_ms)

    def wants(self, message: LoggedMessage) -> bool:
        if not self.start_ms <= message.at_ms <= self.end_ms:
            return False
        if self.after is not None and message.order >= (self.after.at_ms, self.after.id):
            return False
        return not self.types or message.action in self.types


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def message_query(
    charger_id: int,
    *,
    now: datetime,
    start: datetime | None,
    end: datetime | None,
    types: Iterable[str] = (),
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> MessageQuery:
    """The query a request asks for, its defaults filled in; ``InvalidRequest`` if it breaks a rule."""
    for name, value in (("startTimestamp", start), ("endTimestamp", end)):
        if value is not None and value.tzinfo is None:
            raise InvalidRequest(f"{name} must carry a time zone (e.g. Z)", field=name, location="query")
        if value is not None and not EARLIEST <= value < LATEST:
            raise InvalidRequest(f"{name} must be in the years 2000 to 2099", field=name, location="query")
    end = end or (start + DEFAULT_RANGE if start is not None and start + DEFAULT_RANGE < now else now)
    start = start or end - DEFAULT_RANGE
    if start > end:
        raise InvalidRequest("startTimestamp is after endTimestamp", field="startTimestamp", location="query")
    if end - start >= MAX_RANGE:
        raise InvalidRequest("the range must be under 8 days", field="startTimestamp", location="query")
    wanted = frozenset(types)
    if len(wanted) > MAX_TYPES:
        raise InvalidRequest(f"at most {MAX_TYPES} messageType values", field="messageType", location="query")
    for action in wanted:
        if not ACTION_PATTERN.match(action):
            raise InvalidRequest("messageType is not an OCPP action name", field="messageType", location="query")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be 1 to {MAX_LIMIT}", field="limit", location="query")
    after = Position.decode(cursor) if cursor else None
    return MessageQuery(charger_id, start, end, wanted, limit, after)


@dataclass(slots=True)
class StoredBatch:
    """A batch as the listing reads it: its key time, its oldest message, its messages on demand."""

    newest_ms: int
    oldest_ms: int
    messages: Callable[[], list[LoggedMessage]]


@dataclass(slots=True)
class MessagePage:
    items: list[LoggedMessage]
    next_position: Position | None = None
    #: Batches read, and decoded (for the request's log).
    read: int = 0
    decoded: int = field(default=0)
    #: The page ended on ``MAX_PAGE_CHARS``, not on its limit.
    by_size: bool = False


def newest_first(query: MessageQuery, batches: Iterator[StoredBatch], max_decoded: int = 200) -> MessagePage:
    """One page of ``query``'s messages, newest first, from batches in descending key order.

    Reads no more batches than the page needs: a message is given out once no unread batch
    can hold a newer one (every unread batch's key is at most the current one's). At most
    ``max_decoded`` batches are decoded per page; a page that hits that bound ends early,
    with a position that resumes exactly where its reading stopped.
    """
    heap: list[tuple[tuple[int, str], int, LoggedMessage]] = []
    out: list[LoggedMessage] = []
    page = MessagePage(out)
    tie = 0

    chars = 0

    def give_while(above_ms: int) -> bool:
        """Move the final messages (newer than ``above_ms``) to the page; True when it is full."""
        nonlocal chars
        while heap and heap[0][2].at_ms > above_ms:
            message = heapq.heappop(heap)[2]
            chars += message.size
            if out and chars > MAX_PAGE_CHARS:
                # Full by size: this message opens the next page (it is not given out).
                page.by_size = True
                return True
            out.append(message)
            if len(out) > query.limit:
                return True
        return False

    for batch in batches:
        page.read += 1
        if give_while(batch.newest_ms):
            break
        if batch.oldest_ms > query.end_ms:
            continue
        # Bounded only once the page has something to show, so a page always makes progress.
        if page.decoded >= max_decoded and out:
            # Everything newer than this batch's key is already out; resume below it.
            return MessagePage(out[: query.limit], Position(batch.newest_ms + 1), page.read, page.decoded)
        page.decoded += 1
        for message in batch.messages():
            if query.wants(message):
                tie += 1
                heapq.heappush(heap, ((-message.at_ms, _desc(message.id)), tie, message))
    else:
        give_while(-1)
    if len(out) > query.limit or page.by_size:
        items = out[: query.limit]
        last = items[-1]
        return MessagePage(items, Position(last.at_ms, last.id), page.read, page.decoded)
    return MessagePage(out, None, page.read, page.decoded)


def _desc(text: str) -> str:
    """A key that sorts ``text`` descending in a min-heap (ids are ASCII).

    Each character is inverted, and a terminator above every inverted character makes a
    prefix sort after the longer ids it starts ("b-1" after "b-10", as in descending order).
    """
    return "".join(chr(0x7F - ord(c)) for c in text) + "\x7f"
