"""The company journal: every recoverable event sent to a room of a company, at a gap-free position
(decisions 0065, 0102). One item per broadcast, whatever the room's size, in the recovery table, and a counter
on a key of its own (so that its write units do not share the entries' 1,000 a second):

  journal#{companyId}     / {position:012d}   room, frame (the native frame's JSON), exclude?, writer, ttl
  journalseq#{companyId}  / #seq              the last position reserved, and a committed hint

Positions are a gap-free sequence (`shared.stores.sequence`), as a conversation's seqs are: a writer reserves its
position with one ADD on the counter and puts its entry if the position is unfilled; readers see nothing above the
first unfilled position, a writer that will not write its position skips it at once, and one that died
is skipped a minute after a later entry. So k is readable before k + 1 is, positions are never reused, and the
journal has no hole until its TTL removes old entries, which `read_after` detects (it reads at and below the head
only, where nothing is skipped for being unfilled)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Key

from shared.protocol.clock import Clock
from shared.protocol.frames import Frame
from shared.protocol.recovery import Entry
from shared.stores.dynamo import query_pages
from shared.stores.sequence import SKIPPED, TOP, WATERMARK_PAGE, Sequence

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import ConditionCheckTypeDef

    from shared.stores.dynamo import Table

# A position is reserved again only when its writer was presumed dead, or the counter lagged the entries.
APPEND_ATTEMPTS = 5


@dataclass(frozen=True)
class Span:
    """What the journal holds after a position: the entries in order, complete (no hole) or not."""

    entries: list[Entry]
    head: int
    complete: bool


def _pk(company_id: str) -> str:
    return f"journal#{company_id}"


def _counter_key(company_id: str) -> dict[str, str]:
    return {"pk": f"journalseq#{company_id}", "sk": "#seq"}


class Journal:
    def __init__(self, table: Table, retention: timedelta, clock: Clock) -> None:
        """`retention`: how long an entry must stay readable (the recovery window and a connection's life)."""
        self._table = table
        self._retention = retention
        self._clock = clock

    @property
    def table_name(self) -> str:
        return self._table.name

    def _positions(self, company_id: str, now: datetime) -> Sequence:
        # Entries expire: the counter is made from them before the first reservation, never reused from 1.
        ttl = int((now + self._retention).timestamp())
        return Sequence(
            self._table,
            self._clock,
            _pk(company_id),
            _counter_key(company_id),
            "",
            expiring=True,
            skip_fields={"ttl": ttl},
        )

    def append(self, company_id: str, room: str, frame: Frame, exclude: str | None, now: datetime) -> int:
        """Record one event at the company's next position; returns the position."""
        positions = self._positions(company_id, now)
        # Tells this write from another's at its position: botocore may resend a put whose answer was lost.
        writer = secrets.token_hex(8)
        item: dict[str, Any] = {
            "room": room,
            "frame": json.dumps(frame, ensure_ascii=False, separators=(",", ":")),
            "writer": writer,
            "ttl": int((now + self._retention).timestamp()),
        }
        if exclude is not None:
            item["exclude"] = exclude
        for _ in range(APPEND_ATTEMPTS):
            position, committed = positions.reserve()
            try:
                taken = positions.fill(
                    {**item, "sk": positions.sk(position)}, lambda found: found.get("writer") == {"S": writer}
                )
            except Exception:
                positions.skip_quietly(position)  # so that readers do not wait a minute for it
                raise
            if taken is None:
                positions.stored(position, committed)
                return position
            if not taken.skipped:
                # An entry is at the position: written before the counter existed (an upgrade, decision 0102).
                positions.catch_up(positions.last_stored())
            # Else this writer was presumed dead and its position skipped: it takes another.
        raise RuntimeError(f"no free journal position after {APPEND_ATTEMPTS} reservations")

    def head(self, company_id: str) -> int:
        """The last position reserved (0 before the first), read consistently: an event at a later position is
        reserved after this read, so its broadcast reads its room after it. Events up to it may still be being
        written: `read_after` stops below the first of them."""
        return self._positions(company_id, self._clock.now()).reserved()

    def read_after(self, company_id: str, position: int, limit: int) -> Span | None:
        """The entries after `position`, in order, up to the first position after it not yet written, at most `limit`
        of them: None when there are more (the caller must not replay part of them). `complete` is False when one is
        missing (expired). A position at or below `position` still being written does not hold the read back: the
        caller has it already, or it is before the caller's cut."""
        positions = self._positions(company_id, self._clock.now())
        # Nothing above a position not yet written is replayed: it would be jumped over.
        head = positions.watermark(TOP)
        entries: list[Entry] = []
        if head <= position:
            return self._run_after(positions, position, limit)
        query: dict[str, Any] = {
            "KeyConditionExpression": Key("pk").eq(_pk(company_id))
            & Key("sk").between(positions.sk(position + 1), positions.sk(head)),
            "ConsistentRead": True,
        }
        expected = position + 1
        complete = True
        for items in query_pages(self._table, **query):
            for item in items:
                found = int(str(item["sk"]))
                if found != expected:
                    complete = False
                expected = found + 1
                if SKIPPED in item:
                    continue  # a position whose writer did not write it: nothing to replay
                if len(entries) == limit:
                    return None
                entries.append(Entry(found, str(item["room"]), json.loads(str(item["frame"])), item.get("exclude")))
        if expected != head + 1:
            complete = False
        return Span(entries, head, complete)

    @staticmethod
    def _run_after(positions: Sequence, position: int, limit: int) -> Span | None:
        """The entries after `position` when the watermark is at or below it: what the caller asks for starts past
        it (a new session's cut is the last position reserved, which may be above one still being written, decision
        0102), so the run is read from `position` + 1, up to its first position not yet written (decision 0108). Above
        the watermark, so above the committed hint: nothing there is missing for having expired."""
        last = positions.reserved()
        entries: list[Entry] = []
        top = position
        if last <= position:
            return Span(entries, position, True)
        for item in positions.filled(position + 1, last, WATERMARK_PAGE):
            top = positions.number_of(item)
            if SKIPPED in item:
                continue
            if len(entries) == limit:
                return None
            entries.append(Entry(top, str(item["room"]), json.loads(str(item["frame"])), item.get("exclude")))
        return Span(entries, top, True)

    def free_check(self, company_id: str, position: int) -> ConditionCheckTypeDef:
        """A transaction item that holds only while no position from `position` on is reserved: a write made with
        it is made before any event at `position` or later is reserved, so before it is committed and before its
        broadcast reads its room."""
        return self._positions(company_id, self._clock.now()).unreserved_check(position)
