"""The company journal: every recoverable event sent to a room of a company, at a gap-free position
(decision 0065). One item per broadcast, whatever the room's size, in the recovery table:

  journal#{companyId} / {position:012d}   room, frame (the native frame's JSON), exclude?, ttl

A position k is put only on the condition that it is free, after reading k - 1 as the last one (a consistent
read), exactly as a message's seq is (decision 0020): so k is readable before k + 1 is, positions are never
reused, and the journal has no hole until its TTL removes old entries, which `read_after` detects."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from shared.protocol.frames import Frame
from shared.protocol.recovery import Entry
from shared.stores.dynamo import conditional_check_failed, query_pages

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import ConditionCheckTypeDef

    from shared.stores.dynamo import Table

POSITION_DIGITS = 12
APPEND_ATTEMPTS = 50


@dataclass(frozen=True)
class Span:
    """What the journal holds after a position: the entries in order, complete (no hole) or not."""

    entries: list[Entry]
    head: int
    complete: bool


def _pk(company_id: str) -> str:
    return f"journal#{company_id}"


def _sk(position: int) -> str:
    return f"{position:0{POSITION_DIGITS}d}"


class Journal:
    def __init__(self, table: Table, retention: timedelta) -> None:
        """`retention`: how long an entry must stay readable (the recovery window and a connection's life)."""
        self._table = table
        self._retention = retention

    @property
    def table_name(self) -> str:
        return self._table.name

    def append(self, company_id: str, room: str, frame: Frame, exclude: str | None, now: datetime) -> int:
        """Record one event at the company's next position; returns the position."""
        item: dict[str, Any] = {
            "pk": _pk(company_id),
            "room": room,
            "frame": json.dumps(frame, ensure_ascii=False, separators=(",", ":")),
            "ttl": int((now + self._retention).timestamp()),
        }
        if exclude is not None:
            item["exclude"] = exclude
        for _ in range(APPEND_ATTEMPTS):
            position = self.head(company_id) + 1
            try:
                self._table.put_item(Item={**item, "sk": _sk(position)}, ConditionExpression="attribute_not_exists(pk)")
            except ClientError as error:
                if conditional_check_failed(error):
                    continue  # another event took this position: read again
                raise
            return position
        raise RuntimeError(f"no free journal position after {APPEND_ATTEMPTS} attempts")

    def head(self, company_id: str) -> int:
        """The last position written (0 before the first), read consistently."""
        items = self._table.query(
            KeyConditionExpression=Key("pk").eq(_pk(company_id)),
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
            ProjectionExpression="sk",
        ).get("Items", [])
        return int(str(items[0]["sk"])) if items else 0

    def read_after(self, company_id: str, position: int, limit: int) -> Span | None:
        """The entries after `position`, in order, at most `limit` of them: None when there are more (the
        caller must not replay part of them). `complete` is False when one is missing (expired)."""
        entries: list[Entry] = []
        query: dict[str, Any] = {
            "KeyConditionExpression": Key("pk").eq(_pk(company_id)) & Key("sk").gt(_sk(position)),
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
                if len(entries) == limit:
                    return None
                entries.append(Entry(found, str(item["room"]), json.loads(str(item["frame"])), item.get("exclude")))
        return Span(entries, expected - 1, complete)

    def free_check(self, company_id: str, position: int) -> ConditionCheckTypeDef:
        """A transaction item that holds only while `position` is not yet written: a write made with it is
        made before any event at `position` or later is committed."""
        return {
            "TableName": self._table.name,
            "Key": {"pk": _pk(company_id), "sk": _sk(position)},
            "ConditionExpression": "attribute_not_exists(pk)",
        }
