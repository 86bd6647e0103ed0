"""A gap-free sequence of items under one partition key, numbered from a counter (decisions 0087, 0102): a
conversation's messages by their seq, a company's journal by its positions.

A writer reserves its number with one atomic ADD on the counter (no two writers share one, none waits for another),
then puts its item on the condition that the number is unfilled. Readers return nothing above the first unfilled
number (the watermark), so k + 1 is never readable before k. A writer that will not fill its number skips it at
once; a number whose writer died is skipped by the first reader that meets it once a later item is older than any
writer lives (RESERVATION_LIFE_MS), and a late put then fails on the skip and its writer reserves again. So a number
is filled once, by an item or a skip, and never reused. The counter also keeps a committed hint: every number at and
below it is filled, so readers walk only the items above it.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from boto3.dynamodb.conditions import Key
from botocore.exceptions import BotoCoreError, ClientError

from shared.protocol.clock import Clock
from shared.protocol.ids import SEQ_DIGITS
from shared.stores.dynamo import conditional_check_failed, deserialize, query_pages, update_if

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import ConditionCheckTypeDef

    from shared.stores.dynamo import Table

# The counter's attributes: the last number reserved, and a number at and below which every number is filled.
LAST, COMMITTED = "last", "committed"
# An item's or a skip's writer's clock (epoch ms), read after its reservation: so later than the reservation of
# any number below it.
STORED_AT = "storedAt"
SKIPPED = "skipped"
# A single write refused because a transaction was writing the same item at that moment.
TRANSACTION_CONFLICT_REFUSAL = "TransactionConflictException"
# Longer than any writer lives: the functions that write these items time out at 29 s (template.yaml), and a
# request in flight when one does arrives within seconds; the rest is margin for clocks apart.
RESERVATION_LIFE_MS = 60_000
# Without reads, every this many numbers a writer raises the committed hint, so that the next reader's walk from it
# stays short; a walk reads at most WATERMARK_SCAN items, WATERMARK_PAGE a query.
ADVANCE_EVERY = 256
WATERMARK_PAGE = 100
WATERMARK_SCAN = 1000
FREE = "attribute_not_exists(pk)"
DIGITS = SEQ_DIGITS
TOP = 10**DIGITS - 1


@dataclass
class Walk:
    """How a walk of the filled numbers ended: `held` when it stopped at a number whose writer may still fill it,
    with an item stored above that number."""

    held: bool = False


@dataclass(frozen=True)
class Taken:
    """The reserved number was filled by another: a skip (this writer was presumed dead), else an item."""

    skipped: bool


@dataclass(frozen=True)
class Sequence:
    """The numbered items under `pk`, keyed by `prefix` and the number in DIGITS digits, and their counter at
    `counter`. `expiring`: items are removed by TTL, so the counter is made from the items before any reservation
    (a number whose item expired must not be reserved again); `skip_fields` go on every skip (its `ttl`)."""

    table: Table
    clock: Clock
    pk: str
    counter: dict[str, str]
    prefix: str
    expiring: bool = False
    skip_fields: dict[str, Any] = field(default_factory=dict)

    def sk(self, number: int) -> str:
        return f"{self.prefix}{number:0{DIGITS}d}"

    def number_of(self, item: dict[str, Any]) -> int:
        return int(str(item["sk"])[len(self.prefix) :])

    def now_ms(self) -> int:
        return int(self.clock.now().timestamp() * 1000)

    def reserve(self) -> tuple[int, int]:
        """The next number (one atomic ADD, so no two writers share one), and the committed hint as it stood."""
        update: dict[str, Any] = {
            "Key": self.counter,
            "UpdateExpression": "ADD #last :one",
            "ExpressionAttributeNames": {"#last": LAST},
            "ExpressionAttributeValues": {":one": 1},
            "ReturnValues": "ALL_NEW",
        }
        if self.expiring:
            update["ConditionExpression"] = "attribute_exists(#last)"
        try:
            result = self.table.update_item(**update)
        except ClientError as error:
            if not conditional_check_failed(error):
                raise
            # No counter yet: start it at the last item written (each taken as the last + 1 before counters).
            self.catch_up(self.last_stored())
            result = self.table.update_item(**update)
        reserved = result["Attributes"]
        return int(reserved[LAST]), int(reserved.get(COMMITTED, 0))

    def fill(self, item: dict[str, Any], match: Callable[[dict[str, Any]], bool]) -> Taken | None:
        """Put `item` at its reserved number if unfilled: None when written (or found written by this very write,
        `match`: a retried request whose answer was lost), else what took the number."""
        try:
            self.table.put_item(
                Item={**item, "pk": self.pk, STORED_AT: self.now_ms()},
                ConditionExpression=FREE,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not conditional_check_failed(error):
                raise
            found: dict[str, Any] = cast(dict[str, Any], error.response).get("Item", {})
            return None if match(found) else Taken(skipped=SKIPPED in found)
        return None

    def stored(self, number: int, committed: int) -> None:
        """After a number is filled: every ADVANCE_EVERY numbers, raise the hint if no reader has lately. What was
        stored is stored: a failure here is not the writer's, and the next reader walks a little further."""
        if number % ADVANCE_EVERY == 0 and number - committed > ADVANCE_EVERY:
            with contextlib.suppress(ClientError, BotoCoreError):
                self.watermark(number, WATERMARK_SCAN)

    def skip(self, number: int) -> dict[str, Any] | None:
        """Fill `number` with a skip unless it is filled: what fills it now, either way. None when a transaction is
        writing the number's item at this moment (botocore does not retry that refusal): its writer is alive and
        filling it."""
        item = {**self.skip_fields, "pk": self.pk, "sk": self.sk(number), SKIPPED: True, STORED_AT: self.now_ms()}
        try:
            self.table.put_item(Item=item, ConditionExpression=FREE, ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == TRANSACTION_CONFLICT_REFUSAL:
                return None
            if not conditional_check_failed(error):
                raise
            return deserialize(cast(dict[str, Any], error.response)["Item"])
        return item

    def skip_quietly(self, number: int) -> None:
        """Skip a number this writer will not fill; if even that fails, readers skip it once its writer is
        presumed dead."""
        with contextlib.suppress(ClientError, BotoCoreError):
            self.skip(number)

    def catch_up(self, last: int) -> None:
        """Raise the counter to `last`, the last item written: items written before the counter existed (each taken
        as the last + 1, so they have no gap, and the committed hint is theirs). Any number reserved since is at
        most the counter's last: it is raised only when the items are ahead of it."""
        update_if(
            self.table,
            Key=self.counter,
            UpdateExpression="SET #last = :last, #committed = if_not_exists(#committed, :last)",
            ConditionExpression="attribute_not_exists(#last) OR #last < :last",
            ExpressionAttributeNames={"#last": LAST, "#committed": COMMITTED},
            ExpressionAttributeValues={":last": last},
        )

    def reserved(self) -> int:
        """The last number reserved (0 before the first), read consistently: a number reserved later is reserved
        after this read."""
        item = self.table.get_item(Key=self.counter, ConsistentRead=True).get("Item", {})
        if LAST in item:
            return int(item[LAST])
        stored = self.last_stored()
        if stored:
            self.catch_up(stored)
        return stored

    def last_stored(self) -> int:
        result = self.table.query(
            KeyConditionExpression=Key("pk").eq(self.pk) & Key("sk").between(self.sk(1), self.sk(TOP)),
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
            ProjectionExpression="sk",
        )
        items = result.get("Items", [])
        return self.number_of(items[0]) if items else 0

    def unreserved_check(self, number: int) -> ConditionCheckTypeDef:
        """A transaction item that holds only while no number from `number` on is reserved: a write made with it
        is made before any item at `number` or later is reserved, so before it is written."""
        return {
            "TableName": self.table.name,
            "Key": self.counter,
            "ConditionExpression": "attribute_not_exists(#last) OR #last < :number",
            "ExpressionAttributeNames": {"#last": LAST},
            "ExpressionAttributeValues": {":number": number},
        }

    def any_between(self, low: int, high: int) -> bool:
        """Whether any number from `low` up to `high` is filled (by an item or a skip)."""
        key = Key("pk").eq(self.pk) & Key("sk").between(self.sk(low), self.sk(high))
        found = self.table.query(KeyConditionExpression=key, Limit=1, ConsistentRead=True, ProjectionExpression="sk")
        return bool(found.get("Items"))

    def filled(self, low: int, high: int, page: int, walk: Walk | None = None) -> Iterator[dict[str, Any]]:
        """The items from `low` up to `high` (skips included) in order, up to the first number not yet filled whose
        writer may still fill it (`walk.held` then). A number below a stored one was reserved before it; once that
        stored item is older than any writer lives, the number's writer is dead and the number is skipped here."""
        expected = low
        key = Key("pk").eq(self.pk) & Key("sk").between(self.sk(low), self.sk(high))
        for items in query_pages(self.table, KeyConditionExpression=key, Limit=page, ConsistentRead=True):
            for item in items:
                number = self.number_of(item)
                if number > expected:
                    if self.now_ms() - int(item.get(STORED_AT, 0)) <= RESERVATION_LIFE_MS:
                        # The writer of `expected` may be alive: nothing above it is readable yet.
                        if walk is not None:
                            walk.held = True
                        return
                    for gap in range(expected, number):
                        filled = self.skip(gap)
                        if filled is None:
                            if walk is not None:
                                walk.held = True
                            return  # its writer is storing it now
                        yield filled
                yield item
                expected = number + 1

    def watermark(self, at_most: int, scan: int | None = None) -> int:
        """The highest number, up to `at_most`, at and below which every number is filled. The counter's committed
        hint is such a number; from it, the items above are read in order, and the hint is raised to what they
        show, every WATERMARK_SCAN items. A reader walks as far as the items go: a hint held back by a slow or dead
        writer may lag by as many numbers as were stored meanwhile, and stopping short would hide them. A writer
        walks at most `scan` items, so that its path stays short."""
        item = self.table.get_item(Key=self.counter, ConsistentRead=True).get("Item", {})
        if LAST not in item:
            # None reserved yet: any items were written before the counter, each at the last written + 1.
            stored = self.last_stored()
            if stored == 0:
                return 0
            self.catch_up(stored)
            item = self.table.get_item(Key=self.counter, ConsistentRead=True).get("Item", {})
        committed, last = int(item.get(COMMITTED, 0)), int(item.get(LAST, 0))
        top, end = committed, min(at_most, last)
        while top < end and (scan is None or top - committed < scan):
            walked = top
            ahead = self.filled(walked + 1, end, WATERMARK_PAGE)
            for filled in itertools.islice(ahead, WATERMARK_SCAN):
                top = self.number_of(filled)
            if top > walked:
                update_if(
                    self.table,
                    Key=self.counter,
                    UpdateExpression="SET #committed = :top",
                    ConditionExpression="attribute_not_exists(#committed) OR #committed < :top",
                    ExpressionAttributeNames={"#committed": COMMITTED},
                    ExpressionAttributeValues={":top": top},
                )
            if top - walked < WATERMARK_SCAN:
                break  # the walk met an unfilled number, or the end
        return min(top, at_most)
