"""Interleavings that decision 0087's reservations must survive, each against SPEC section 5: messages stored
before the counter are readable before any send, a committed hint far behind is walked whole, a retry racing
its original, two sends to a conversation of such messages racing each other, and a client that hears a seq
while a lower one is unfilled (filled later, or skipped once its writer is presumed dead)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import boto3
import pytest

from shared.domain.history import history_page
from shared.protocol.records import Message
from shared.stores.conversations import ConversationStore, MessageSlice, Stored
from shared.stores.dynamo import Table
from tests.faults import FaultInjector
from tests.test_seq_reservations import (
    COMPANY,
    CONVERSATION,
    LIFE,
    PK,
    FakeClock,
    HeldWriter,
    after,
    clock,
    compose,
    item_at,
    newest,
    send,
    store,
)

__all__ = ["clock", "store"]  # the fixtures, shared with test_seq_reservations


def store_the_old_way(*seqs: int) -> None:
    """Messages stored as decision 20 did, each at the last stored seq + 1: no counter, no storedAt."""
    table = boto3.resource("dynamodb").Table("test-conversations")
    for seq in seqs:
        table.put_item(Item={"pk": PK, "sk": f"msg#{seq:012d}", **compose(f"old{seq}")(seq).public()})


def test_messages_stored_before_the_counter_are_readable_before_any_send(store: ConversationStore) -> None:
    store_the_old_way(1, 2, 3)
    assert newest(store) == ["old1", "old2", "old3"]
    assert after(store, 0) == ["old1", "old2", "old3"]
    assert after(store, 1) == ["old2", "old3"]
    assert [m.content for m in store.messages(COMPANY, CONVERSATION, None, 3, 10).messages] == ["old2", "old1"]
    # The read took the counter up to them: the next send follows them, and nothing waits.
    assert send(store, "new").message.seq == 4
    assert after(store, 2) == ["old3", "new"]


def test_a_read_of_a_conversation_without_messages_writes_no_counter(store: ConversationStore) -> None:
    assert newest(store) == []
    assert after(store, 0) == []
    assert item_at(1) is None
    counter = boto3.resource("dynamodb").Table("test-conversations")
    assert "Item" not in counter.get_item(Key={"pk": f"seq#{COMPANY}#{CONVERSATION}", "sk": "#seq"})


def test_a_committed_hint_far_behind_is_walked_whole(
    store: ConversationStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer slow or dead at seq 1 holds the hint back while thousands of messages are stored above it (at
    nearly 500 a second, 60 s is 30,000); once it is filled or skipped, a read must see all of them, not the
    first WATERMARK_SCAN, or a client that saw seq 7 and asks `after: 6` is told nothing follows."""
    monkeypatch.setattr("shared.stores.sequence.WATERMARK_SCAN", 3)
    monkeypatch.setattr("shared.stores.sequence.WATERMARK_PAGE", 2)
    dead = HeldWriter(monkeypatch, store, "lost")
    dead.die = True
    dead.finish()
    texts = [f"m{seq}" for seq in range(2, 10)]
    assert [send(store, text).message.seq for text in texts] == list(range(2, 10))
    clock.at += LIFE + timedelta(milliseconds=1)
    assert after(store, 6) == ["m7", "m8", "m9"]
    assert newest(store) == texts
    assert after(store, 0) == texts


def test_a_retry_racing_its_original_stores_one_message_and_leaves_no_seq_waiting(
    store: ConversationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The original reserves seq 1 and is held before its write; its retry reserves 2 and stores the message;
    then the original's write meets the retry's marker: it answers the retry's message and skips seq 1."""
    reserved, release = threading.Event(), threading.Event()
    real_fill = ConversationStore._fill

    def fill(self_: ConversationStore, pk: str, message: Message, sender_key: str | None) -> Any:
        if threading.current_thread().name == "original" and not reserved.is_set():
            reserved.set()
            assert release.wait(10)
        return real_fill(self_, pk, message, sender_key)

    monkeypatch.setattr(ConversationStore, "_fill", fill)
    answers: list[Stored] = []
    original = threading.Thread(name="original", target=lambda: answers.append(send(store, "once", "m-1")))
    original.start()
    assert reserved.wait(10)
    retry = send(store, "once", "m-1")
    assert (retry.message.seq, retry.created) == (2, True)
    release.set()
    original.join(10)
    [first] = answers
    assert (first.message, first.created) == (retry.message, False)  # the same id; only the retry broadcasts
    skipped = item_at(1)
    assert skipped is not None
    assert skipped["skipped"] is True
    assert after(store, 0) == ["once"]
    assert newest(store) == ["once"]
    assert send(store, "next").message.seq == 3


def test_two_sends_to_a_conversation_of_messages_stored_before_the_counter_race_to_distinct_seqs(
    store: ConversationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both reserve (seqs 1 and 2, both taken by the old messages) before either writes: each raises the
    counter and reserves again, so they take 4 and 5 and no old message is overwritten."""
    store_the_old_way(1, 2, 3)
    both_reserved = threading.Barrier(2, timeout=10)
    real_fill = ConversationStore._fill
    first_fill: set[str] = set()

    def fill(self_: ConversationStore, pk: str, message: Message, sender_key: str | None) -> Any:
        name = threading.current_thread().name
        if name not in first_fill:
            first_fill.add(name)
            both_reserved.wait()
        return real_fill(self_, pk, message, sender_key)

    monkeypatch.setattr(ConversationStore, "_fill", fill)
    seqs: dict[str, int] = {}

    def sender(text: str, client_message_id: str | None) -> None:
        seqs[text] = send(store, text, client_message_id).message.seq

    threads = [
        threading.Thread(name=name, target=sender, args=(name, cmid)) for name, cmid in (("a", None), ("b", "m-b"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(seqs.values()) == [4, 5]
    assert newest(store)[:3] == ["old1", "old2", "old3"]
    assert sorted(newest(store)[3:]) == ["a", "b"]
    assert after(store, 3) == newest(store)[3:]


def catch_up(store: ConversationStore, seq: int, meanwhile: Callable[[], None]) -> list[str]:
    """docs/protocol.md's catch-up, as a client runs it on a jump: `history {after: lastSeq}`, following
    `nextCursor` until it is null; a page without messages whose `nextCursor` is the cursor sent means a lower
    seq is still being written, and the client asks again a moment later (`meanwhile` is that moment)."""
    found: list[str] = []
    cursor: int | None = seq
    for _ in range(20):
        if cursor is None:
            return found
        page = history_page(store.messages(COMPANY, CONVERSATION, cursor, None, 2), cursor, 128 * 1024)
        found += [str(m.content) for m in page.messages]
        if page.next_cursor == cursor:
            meanwhile()
        cursor = page.next_cursor
    raise AssertionError("the catch-up never ended")


def test_a_client_that_sees_a_seq_jump_gets_the_stored_messages_it_missed(
    store: ConversationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow live writer holds seq 1. Seq 2 is stored and broadcast (this client misses that frame), then seq 3
    is stored and broadcast (this client hears it): the jump from 0 to 3 sends it to `history {after: 0}`."""
    slow = HeldWriter(monkeypatch, store, "slow")
    assert send(store, "missed").message.seq == 2
    assert send(store, "heard").message.seq == 3
    page = store.messages(COMPANY, CONVERSATION, 0, None, 50)
    try:
        assert "missed" in [m.content for m in page.messages] or page.has_more
    finally:
        slow.finish()


def test_a_jump_over_a_seq_filled_later_is_caught_up_whole_and_in_order(
    store: ConversationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client hears seq 3 while seq 1's writer is slow: its catch-up is told to come back (nextCursor 0),
    the writer stores seq 1 meanwhile, and the next ask returns 1, 2 and 3."""
    slow = HeldWriter(monkeypatch, store, "slow")
    send(store, "missed")
    send(store, "heard")
    page = history_page(store.messages(COMPANY, CONVERSATION, 0, None, 50), 0, 128 * 1024)
    assert (page.messages, page.next_cursor) == ([], 0)
    assert catch_up(store, 0, slow.finish) == ["slow", "missed", "heard"]
    assert [stored.message.seq for stored in slow.stored] == [1]


def test_a_jump_over_a_seq_whose_writer_died_is_caught_up_once_the_seq_is_skipped(
    store: ConversationStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seq 1's writer dies after reserving; the client heard seq 3. Its catch-up keeps being told to come back
    until the stored seq 2 is older than any writer lives; then seq 1 is skipped and 2 and 3 are returned."""
    dead = HeldWriter(monkeypatch, store, "lost")
    dead.die = True
    dead.finish()
    send(store, "missed")
    send(store, "heard")
    waits: list[None] = []

    def a_while() -> None:
        waits.append(None)
        clock.at += LIFE / 4

    assert catch_up(store, 0, a_while) == ["missed", "heard"]
    # Told to come back when asking at 0, 15, 30, 45 and 60 s after seq 2 was stored (a writer may live that long).
    assert len(waits) == 5
    skipped = item_at(1)
    assert skipped is not None
    assert skipped["skipped"] is True


def test_a_cursor_above_an_unfilled_seq_is_told_to_come_back_only_while_a_later_seq_is_stored(
    store: ConversationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seq 1 is slow; 2 and 3 are stored. Asked `after: 2`, nothing is readable yet but seq 3 is stored: more
    follows. Asked `after: 3`, nothing later is stored: nothing follows (the client has all it heard of)."""
    slow = HeldWriter(monkeypatch, store, "slow")
    send(store, "b")
    send(store, "c")
    try:
        assert store.messages(COMPANY, CONVERSATION, 2, None, 50) == MessageSlice([], has_more=True)
        assert store.messages(COMPANY, CONVERSATION, 3, None, 50) == MessageSlice([], has_more=False)
    finally:
        slow.finish()
    assert store.messages(COMPANY, CONVERSATION, 2, None, 50).messages[0].content == "c"


def test_a_page_that_stops_at_an_unfilled_seq_with_nothing_stored_above_says_nothing_follows(
    store: ConversationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seq 2's writer is slow, and no later seq is stored: no client can have heard of one, so the page ends."""
    send(store, "a")
    slow = HeldWriter(monkeypatch, store, "slow")
    try:
        page = store.messages(COMPANY, CONVERSATION, 0, None, 50)
        assert ([m.content for m in page.messages], page.has_more) == (["a"], False)
    finally:
        slow.finish()


def test_a_page_that_stops_at_an_unfilled_seq_after_messages_continues_from_its_last_one(
    store: ConversationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seq 1 stored, seq 2 slow, seq 3 stored: the page returns seq 1 with nextCursor 1, and asked again from 1
    the page is empty with nextCursor 1 until seq 2 is stored."""
    send(store, "a")
    slow = HeldWriter(monkeypatch, store, "slow")
    send(store, "c")
    first = history_page(store.messages(COMPANY, CONVERSATION, 0, None, 50), 0, 128 * 1024)
    assert ([m.content for m in first.messages], first.next_cursor) == (["a"], 1)
    assert catch_up(store, 1, slow.finish) == ["slow", "c"]


def test_a_reader_whose_skip_meets_the_writers_transaction_in_flight_waits_for_it(
    session: boto3.session.Session, aws: None, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader presumes seq 1's writer dead just as that writer's transaction (a clientMessageId send) is being
    applied: DynamoDB refuses the reader's PutItem with TransactionConflictException (injected here), which
    botocore does not retry. The writer is alive, so the read stops below its seq rather than failing."""
    faults = FaultInjector(session)
    store = ConversationStore(Table(session.client("dynamodb"), "test-conversations"), clock)
    held = HeldWriter(monkeypatch, store, "late")  # seq 1
    assert send(store, "b").message.seq == 2
    clock.at += LIFE + timedelta(milliseconds=1)
    faults.fail("PutItem", times=1, code="TransactionConflictException")
    assert after(store, 0) == []
    assert faults.injected["PutItem"] == 1
    assert item_at(1) is None
    held.finish()
    assert [stored.message.seq for stored in held.stored] == [1]
    assert after(store, 0) == ["late", "b"]
