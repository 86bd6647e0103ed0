"""Seqs reserved from the counter (decision 0087): a writer that dies after reserving, a slow live one, a retry,
a failed write and messages stored before the counter, each against SPEC section 5's order: history never
shows a message above an unfilled seq, a seq is filled once and never reused, `after` gives exactly the later ones."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from shared.domain.messages import agent_draft
from shared.protocol.ids import message_id
from shared.protocol.records import Message
from shared.stores.conversations import ConversationStore, Stored
from shared.stores.dynamo import Table
from shared.stores.sequence import RESERVATION_LIFE_MS
from tests.faults import FaultInjector

COMPANY, CONVERSATION = "acme", "c-1"
PK = f"conv#{COMPANY}#{CONVERSATION}"
LIFE = timedelta(milliseconds=RESERVATION_LIFE_MS)


class FakeClock:
    def __init__(self) -> None:
        self.at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at

    def sleep(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


class Died(BaseException):
    """The writer's process ends where this is raised (a timeout, a crash): it runs no clean-up."""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(aws: None, clock: FakeClock) -> ConversationStore:
    return ConversationStore(Table(boto3.client("dynamodb"), "test-conversations"), clock)


def compose(content: str, client_message_id: str | None = None) -> Callable[[int], Message]:
    return agent_draft(CONVERSATION, content, "ana", client_message_id, datetime(2026, 12, 1, tzinfo=UTC)).at


def send(store: ConversationStore, content: str, client_message_id: str | None = None) -> Stored:
    key = None if client_message_id is None else f"agent:ana#{client_message_id}"
    return store.add_message(COMPANY, CONVERSATION, compose(content, client_message_id), key)


def after(store: ConversationStore, seq: int) -> list[str]:
    """Every message readable now after `seq`, following the pages as a client does (to an empty page: one that
    says more follows asks the client to come back in a moment)."""
    found: list[str] = []
    cursor: int | None = seq
    while cursor is not None:
        page = store.messages(COMPANY, CONVERSATION, cursor, None, 2)
        found += [str(m.content) for m in page.messages]
        cursor = page.messages[-1].seq if page.has_more and page.messages else None
    return found


def newest(store: ConversationStore) -> list[str]:
    return [str(m.content) for m in reversed(store.messages(COMPANY, CONVERSATION, None, None, 100).messages)]


def item_at(seq: int) -> dict[str, Any] | None:
    table = boto3.resource("dynamodb").Table("test-conversations")
    return table.get_item(Key={"pk": PK, "sk": f"msg#{seq:012d}"}, ConsistentRead=True).get("Item")


class HeldWriter:
    """A sender whose first write waits, after its seq is reserved, until released (or dies when told to)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, store: ConversationStore, content: str) -> None:
        self.reserved = threading.Event()
        self.release = threading.Event()
        self.die = False
        self.stored: list[Stored] = []
        real_fill = ConversationStore._fill
        writer = f"held-{content}"

        def fill(self_: ConversationStore, pk: str, message: Message, sender_key: str | None) -> Any:
            if threading.current_thread().name == writer and not self.reserved.is_set():
                self.reserved.set()
                assert self.release.wait(10)
                if self.die:
                    raise Died
            return real_fill(self_, pk, message, sender_key)

        monkeypatch.setattr(ConversationStore, "_fill", fill)
        self.thread = threading.Thread(name=writer, target=self._run, args=(store, content))
        self.thread.start()
        assert self.reserved.wait(10)

    def _run(self, store: ConversationStore, content: str) -> None:
        with contextlib.suppress(Died):
            self.stored.append(send(store, content))

    def finish(self) -> None:
        self.release.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


def test_a_writer_that_dies_after_reserving_holds_history_back_until_presumed_dead_then_its_seq_is_skipped(
    store: ConversationStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = HeldWriter(monkeypatch, store, "lost")
    dead.die = True
    dead.finish()  # seq 1 reserved, never written, no clean-up
    assert dead.stored == []
    assert [send(store, text).message.seq for text in ("b", "c")] == [2, 3]
    for seq in range(4):
        assert after(store, seq) == []
    assert newest(store) == []

    clock.at += LIFE  # as old as a writer may live: its writer may still be alive
    assert after(store, 0) == []
    assert newest(store) == []
    assert item_at(1) is None

    clock.at += timedelta(milliseconds=1)  # older than any writer lives: seq 1's writer is dead
    assert newest(store) == ["b", "c"]
    skipped = item_at(1)
    assert skipped is not None
    assert skipped["skipped"] is True
    assert [after(store, seq) for seq in range(4)] == [["b", "c"], ["b", "c"], ["c"], []]
    assert store.get_message(COMPANY, CONVERSATION, message_id(1)) is None  # nothing to edit or delete there
    # The skipped seq is never reused: the next message takes the next one.
    assert send(store, "d").message.seq == 4
    assert after(store, 0) == ["b", "c", "d"]


def test_a_late_writer_presumed_dead_meets_the_skip_and_stores_its_message_at_a_new_seq(
    store: ConversationStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    late = HeldWriter(monkeypatch, store, "late")  # holds seq 1
    assert send(store, "b").message.seq == 2
    clock.at += LIFE + timedelta(milliseconds=1)
    assert after(store, 0) == ["b"]  # the reader presumed seq 1's writer dead and skipped it

    late.finish()
    [stored] = late.stored
    assert (stored.message.seq, stored.created) == (3, True)
    assert after(store, 0) == ["b", "late"]
    assert after(store, 2) == ["late"]
    skipped = item_at(1)
    assert skipped is not None
    assert "content" not in skipped
    assert newest(store) == ["b", "late"]


def test_a_slow_live_writer_is_never_skipped(
    store: ConversationStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = HeldWriter(monkeypatch, store, "slow")  # holds seq 1
    later = [send(store, f"m{i}").message.seq for i in range(2, 7)]
    assert later == [2, 3, 4, 5, 6]
    for _ in range(3):
        clock.at += LIFE / 3  # up to the very end of its life, every reader waits for it
        assert [after(store, seq) for seq in range(7)] == [[]] * 7
        assert newest(store) == []
    assert item_at(1) is None

    slow.finish()
    [stored] = slow.stored
    assert stored.message.seq == 1
    everything = ["slow", "m2", "m3", "m4", "m5", "m6"]
    assert newest(store) == everything
    assert [after(store, seq) for seq in range(7)] == [everything[seq:] for seq in range(7)]


def test_a_retried_send_answers_its_first_message_and_skips_the_seq_it_reserved_at_once(
    store: ConversationStore,
) -> None:
    first = send(store, "once", "m-1")
    again = send(store, "once", "m-1")
    assert (again.message, again.created) == (first.message, False)
    assert send(store, "next").message.seq == 3
    # Nothing waits for seq 2: the retry skipped it as soon as it knew.
    assert after(store, 0) == ["once", "next"]
    assert after(store, 1) == ["next"]
    assert newest(store) == ["once", "next"]


def test_a_write_that_fails_skips_its_seq_at_once(session: boto3.session.Session, aws: None, clock: FakeClock) -> None:
    faults = FaultInjector(session)
    store = ConversationStore(Table(session.client("dynamodb"), "test-conversations"), clock)
    faults.fail("PutItem", times=1, code="ValidationException")
    with pytest.raises(Exception, match="ValidationException"):
        send(store, "refused")
    assert faults.injected["PutItem"] == 1
    assert send(store, "kept").message.seq == 2
    assert after(store, 0) == ["kept"]
    assert newest(store) == ["kept"]


def test_messages_stored_before_the_counter_are_followed_by_the_next_seq(store: ConversationStore) -> None:
    """A conversation whose messages were each stored at the last stored seq + 1, before seqs were reserved."""
    table = boto3.resource("dynamodb").Table("test-conversations")
    for seq in (1, 2, 3):
        table.put_item(Item={"pk": PK, "sk": f"msg#{seq:012d}", **compose(f"old{seq}")(seq).public()})
    assert send(store, "new").message.seq == 4
    assert after(store, 0) == ["old1", "old2", "old3", "new"]
    assert newest(store) == ["old1", "old2", "old3", "new"]


def test_reads_raise_the_committed_hint_only_to_a_seq_every_seq_below_which_is_filled(
    store: ConversationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = boto3.resource("dynamodb").Table("test-conversations")
    key = {"pk": f"seq#{COMPANY}#{CONVERSATION}", "sk": "#seq"}
    for text in ("a", "b"):
        send(store, text)
    held = HeldWriter(monkeypatch, store, "held")  # seq 3
    send(store, "d")
    assert newest(store) == ["a", "b"]
    assert counter.get_item(Key=key)["Item"]["committed"] == 2
    held.finish()
    assert newest(store) == ["a", "b", "held", "d"]
    assert counter.get_item(Key=key)["Item"] == {**key, "last": 4, "committed": 4}


def test_without_history_reads_a_writer_raises_the_committed_hint_every_so_many_seqs(
    store: ConversationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shared.stores.sequence.ADVANCE_EVERY", 4)
    counter = boto3.resource("dynamodb").Table("test-conversations")
    key = {"pk": f"seq#{COMPANY}#{CONVERSATION}", "sk": "#seq"}
    for index in range(9):
        send(store, f"m{index}")
    # Seq 4's writer found the hint 4 behind, not more; seq 8's found it 8 behind and raised it to 8.
    assert counter.get_item(Key=key)["Item"] == {**key, "last": 9, "committed": 8}
