"""Interleavings that decision 0087's reservations must survive, each against SPEC section 5: messages stored
before the counter are readable before any send, a committed hint far behind is walked whole, a retry racing
its original, and two sends to a conversation of such messages racing each other."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import boto3
import pytest

from shared.protocol.records import Message
from shared.stores.conversations import ConversationStore, Stored
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
    monkeypatch.setattr("shared.stores.conversations.WATERMARK_SCAN", 3)
    monkeypatch.setattr("shared.stores.conversations.WATERMARK_PAGE", 2)
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


@pytest.mark.xfail(
    strict=True,
    reason="decision 0087 broadcasts a message while a lower seq is still unfilled: a client that saw the later "
    "seq and asks `after` is told nothing follows (has_more false), and misses what it did not hear",
)
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
