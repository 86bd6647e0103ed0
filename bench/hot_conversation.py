"""One hot conversation (issue 23, item 4): many senders at once, gap-free `seq`, the real store code against a
stand-in for DynamoDB that takes 5 ms a call and 1,000 write units a second per partition key.

The stand-in runs in simulated time, so the figures are AWS's round trips and write limits, not this machine's
CPU: the sender threads run one at a time, always the one due soonest, and each DynamoDB call (served by moto)
takes effect 2.5 ms after it is made and answers 2.5 ms later. A write waits until its partition key has the
write units for it (a token bucket without burst, 1,000 a second: the stand-in delays a write the key has no
capacity for, rather than rejecting it and paying the SDK's backoff, so both figures are the best each
algorithm can do). Write units: 1 per KB of the item put (1 for the updates here, all of items under 1 KB),
twice that inside a transaction; a write whose condition fails costs the same.

Each sender stores messages back to back (without a clientMessageId; in one more run, each with one), each as
`message:send` writes it to the conversation's keys: the seq, the message, then its count claim (the other
writes a send makes go to other keys). "Before" is the allocation this replaced (decision 20: read the last
seq, put at the next one if free, again on a lost race), kept here only to measure it; "after" is
`ConversationStore.add_message`.

With sessions on, a send also puts its `message:new` in the company's journal (decision 0065) before it reads the
room: the end-to-end runs add that append, "before" as the journal took positions until decision 0101 (read the
last position, put at the next one if free, again on a lost race), "after" as `Journal.append` does now."""

from __future__ import annotations

import heapq
import itertools
import json
import math
import threading
import time as wall
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError
from moto import mock_aws

from bench.calls import TABLES
from roomcast_local.template import create_tables, load_template
from shared.domain.messages import agent_draft
from shared.protocol.clock import SystemClock
from shared.protocol.outbound import server_event
from shared.protocol.records import Message
from shared.stores.conversations import UNCOUNTED, ConversationStore, MessageSlice
from shared.stores.dynamo import Table, conditional_check_failed, json_client
from shared.stores.dynamo_client import JsonClient
from shared.stores.journal import Journal

CALL_S = 0.005
KEY_WRITE_UNITS_PER_S = 1000
SENDERS = (8, 32, 128)
JOURNAL_SENDERS = (32, 128)
KEYED_SENDERS = 32
SIMULATED_S = 0.5
TABLE = TABLES["ConversationsTable"]
RECOVERY_TABLE = TABLES["RecoveryTable"]
COMPANY, CONVERSATION = "acme", "hot"
# decision 20's allocation gave up after this many lost races in a row
OLD_ATTEMPTS = 25
# and the journal's after this many
OLD_JOURNAL_ATTEMPTS = 50
RETENTION = timedelta(hours=2)
SENT_AT = datetime(2026, 12, 1, tzinfo=UTC)


class SimulatedTime:
    """Threads in simulated time: exactly one runs at a time, the one due soonest; it runs until it waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self._lock = threading.Lock()
        self._due: list[tuple[float, int, threading.Event]] = []
        self._order = itertools.count()

    def arrive(self) -> None:
        """A thread joins at the current time, and waits for its turn."""
        self._wait(self.now, hand_over=False)

    def sleep_until(self, moment: float) -> None:
        self._wait(moment, hand_over=True)

    def leave(self) -> None:
        with self._lock:
            self._hand_over()

    def _wait(self, moment: float, hand_over: bool) -> None:
        turn = threading.Event()
        with self._lock:
            heapq.heappush(self._due, (moment, next(self._order), turn))
            if hand_over:
                self._hand_over()
        turn.wait()

    def _hand_over(self) -> None:
        if self._due:
            moment, _, turn = heapq.heappop(self._due)
            self.now = max(self.now, moment)
            turn.set()

    def waiting(self) -> int:
        with self._lock:
            return len(self._due)


def _units(item: dict[str, Any]) -> int:
    """Write units of a put: DynamoDB's item size (names and values) in KB, rounded up."""
    size = sum(len(name) + len(str(value)) for name, value in item.items())
    return max(1, math.ceil(size / 1024))


class StandInDynamoDb:
    """The calls the stores' `Table` makes (its hand-made caller, decision 0104), in simulated time (see the
    module's text): each call takes CALL_S, and a write waits for its keys' write units."""

    def __init__(self, calls: JsonClient, time: SimulatedTime) -> None:
        self._calls = calls
        self._time = time
        self._free_at: dict[str, float] = {}
        self.units: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        self.calls[operation] += 1
        writes = _writes(operation, params)
        self._time.sleep_until(self._time.now + CALL_S / 2)
        if writes:
            start = max([self._time.now, *(self._free_at.get(key, 0.0) for key in writes)])
            for key, units in writes.items():
                self._free_at[key] = start + units / KEY_WRITE_UNITS_PER_S
                self.units[key] += units
            self._time.sleep_until(start)
        try:
            answer = self._calls.call(operation, params)
        except ClientError:
            self._time.sleep_until(self._time.now + CALL_S / 2)
            raise
        self._time.sleep_until(self._time.now + CALL_S / 2)
        return answer


def _writes(operation: str, params: dict[str, Any]) -> dict[str, int]:
    """The write units a call takes, by partition key."""
    if operation == "PutItem":
        return {params["Item"]["pk"]["S"]: _units(params["Item"])}
    if operation == "UpdateItem":
        return {params["Key"]["pk"]["S"]: 1}
    if operation == "TransactWriteItems":
        writes: Counter[str] = Counter()
        for action in params["TransactItems"]:
            (written,) = action.values()
            item = written.get("Item") or written["Key"]
            writes[item["pk"]["S"]] += 2 * _units(item)
        return dict(writes)
    return {}


def _old_add_message(table: Table, pk: str, compose: Callable[[int], Message]) -> Message:
    """Decision 20's allocation: the last stored seq + 1, put if free, read again on a lost race."""
    for _ in range(OLD_ATTEMPTS):
        last = table.query(
            KeyConditionExpression=Key("pk").eq(pk) & Key("sk").begins_with("msg#"),
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
            ProjectionExpression="sk",
        ).get("Items", [])
        message = compose(int(str(last[0]["sk"])[4:]) + 1 if last else 1)
        item = {"pk": pk, "sk": f"msg#{message.seq:012d}", **message.public(), UNCOUNTED: True}
        try:
            table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as error:
            if not conditional_check_failed(error):
                raise
            continue
        return message
    raise RuntimeError("no free seq")


def _old_append(table: Table, frame: dict[str, Any]) -> None:
    """The journal's append until decision 0101: the last position + 1, put if free, read again on a lost race."""
    pk = f"journal#{COMPANY}"
    item = {"pk": pk, "room": f"conversation:{CONVERSATION}", "frame": json.dumps(frame), "ttl": 0}
    for _ in range(OLD_JOURNAL_ATTEMPTS):
        last = table.query(
            KeyConditionExpression=Key("pk").eq(pk), ScanIndexForward=False, Limit=1, ConsistentRead=True
        ).get("Items", [])
        position = int(str(last[0]["sk"])) + 1 if last else 1
        try:
            table.put_item(Item={**item, "sk": f"{position:012d}"}, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as error:
            if not conditional_check_failed(error):
                raise
            continue
        return
    raise RuntimeError("no free journal position")


def _journal_append(allocation: str, journal: Journal, table: Table, message: Message) -> None:
    """Put the message's `message:new` in the company journal, as `Hub.record` does for a send with sessions on."""
    frame = server_event("message:new", message)
    if allocation == "after":
        journal.append(COMPANY, f"conversation:{CONVERSATION}", frame, None, SENT_AT)
    else:
        _old_append(table, frame)


def _run(senders: int, allocation: str, keyed: bool = False, journal: str | None = None) -> dict[str, Any]:
    time = SimulatedTime()
    with mock_aws():
        client = boto3.client("dynamodb")
        create_tables(client, load_template(), TABLES)
        dynamodb = StandInDynamoDb(json_client(client), time)
        table, recovery = Table(client, TABLE), Table(client, RECOVERY_TABLE)
        table.calls = recovery.calls = dynamodb  # type: ignore[assignment]
        store = ConversationStore(table, SystemClock())
        company_journal = Journal(recovery, RETENTION, SystemClock())
        pk = f"conv#{COMPANY}#{CONVERSATION}"
        stored: list[float] = []
        failed: list[float] = []

        def sender(index: int) -> None:
            time.arrive()
            try:
                for count in itertools.count():
                    if time.now >= SIMULATED_S:
                        return
                    client_message_id = f"{index}-{count}" if keyed else None
                    draft = agent_draft(CONVERSATION, f"message {count}", f"user{index}", client_message_id, SENT_AT)
                    try:
                        if allocation == "after":
                            message = store.add_message(COMPANY, CONVERSATION, draft.at, draft.sender_key).message
                        else:
                            message = _old_add_message(table, pk, draft.at)
                    except RuntimeError:
                        failed.append(time.now)
                        continue
                    store.claim_message_count(COMPANY, message)
                    if journal is not None:
                        try:
                            _journal_append(journal, company_journal, recovery, message)
                        except RuntimeError:
                            failed.append(time.now)
                            continue
                    stored.append(time.now)
            finally:
                time.leave()

        threads = [threading.Thread(target=sender, args=(index,)) for index in range(senders)]
        for thread in threads:
            thread.start()
        while time.waiting() < senders:
            wall.sleep(0.01)
        time.leave()  # the first sender's turn
        for thread in threads:
            thread.join()
        history = store.messages(COMPANY, CONVERSATION, 0, None, 100)
        seqs = _all_seqs(store, history)
    within = sum(1 for moment in stored if moment <= SIMULATED_S)
    assert seqs == list(range(1, len(seqs) + 1)), "seqs are gap-free"
    return {
        "senders": senders,
        **({} if journal is None else {"journal": journal}),
        "msgs_per_s": round(within / SIMULATED_S),
        "failed_sends_per_s": round(sum(1 for moment in failed if moment <= SIMULATED_S) / SIMULATED_S),
        "busiest_key_write_units_per_s": round(max(dynamodb.units.values()) / time.now),
        "calls_per_message": round(sum(dynamodb.calls.values()) / max(1, len(stored)), 2),
    }


def _all_seqs(store: ConversationStore, page: MessageSlice) -> list[int]:
    seqs = [message.seq for message in page.messages]
    while page.has_more:
        page = store.messages(COMPANY, CONVERSATION, seqs[-1], None, 100)
        seqs += [message.seq for message in page.messages]
    return seqs


def run() -> dict[str, Any]:
    """Messages a second stored in one conversation, before and after, at each number of senders."""
    sweeps = {allocation: [_run(senders, allocation) for senders in SENDERS] for allocation in ("before", "after")}
    # Every send with a clientMessageId: its marker and message put in one transaction (twice the write units).
    sweeps["after_with_client_message_ids"] = [_run(KEYED_SENDERS, "after", keyed=True)]
    # Sessions on: each message also appended to the company's journal, before and after decision 0101.
    for journal in ("before", "after"):
        sweeps[f"end_to_end_journal_{journal}"] = [
            _run(senders, "after", journal=journal) for senders in JOURNAL_SENDERS
        ]
    for allocation, rows in sweeps.items():
        print(f"  hot conversation, {allocation}: {rows}", flush=True)
    best = {allocation: max(rows, key=lambda row: row["msgs_per_s"]) for allocation, rows in sweeps.items()}
    return {
        "capacity": {
            "hot_conversation_msgs_per_s": best["after"]["msgs_per_s"],
            "hot_conversation_msgs_per_s_before": best["before"]["msgs_per_s"],
            "hot_conversation_with_journal_msgs_per_s": best["end_to_end_journal_after"]["msgs_per_s"],
            "hot_conversation_with_journal_msgs_per_s_before": best["end_to_end_journal_before"]["msgs_per_s"],
            "hot_conversation": {
                "stand_in": f"{CALL_S * 1000:g} ms a call, {KEY_WRITE_UNITS_PER_S} write units a second per key, "
                f"{SIMULATED_S:g} s simulated",
                **sweeps,
            },
        }
    }
