"""The company journal's positions from a counter (decision 0102), against SPEC section 11's replay, complete and in
order: two appends at once, a writer that dies between reserving its position and writing it, a reader (and a
session's cut) meeting a position not yet written, and entries written before the counter (an upgrade)."""

from __future__ import annotations

import contextlib
import json
import threading
from datetime import timedelta
from typing import Any

import boto3
import pytest

from shared.stores.dynamo import Table, transact
from shared.stores.journal import Journal
from shared.stores.sequence import RESERVATION_LIFE_MS, Sequence, Taken
from tests.test_seq_reservations import Died, FakeClock

COMPANY = "acme"
PK = f"journal#{COMPANY}"
LIFE = timedelta(milliseconds=RESERVATION_LIFE_MS)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def journal(aws: None, clock: FakeClock) -> Journal:
    return Journal(Table(boto3.client("dynamodb"), "test-recovery"), timedelta(hours=4), clock)


def append(journal: Journal, clock: FakeClock, text: str) -> int:
    return journal.append(COMPANY, "company:acme", {"event": "x", "data": text}, None, clock.now())


def replayed(journal: Journal, position: int) -> tuple[list[tuple[int, str]], int, bool]:
    span = journal.read_after(COMPANY, position, 100)
    assert span is not None
    return [(entry.position, entry.frame["data"]) for entry in span.entries], span.head, span.complete


def entry_at(position: int) -> dict[str, Any] | None:
    table = boto3.resource("dynamodb").Table("test-recovery")
    return table.get_item(Key={"pk": PK, "sk": f"{position:012d}"}, ConsistentRead=True).get("Item")


def cut_holds(journal: Journal, position: int) -> bool:
    """Whether a session's memberships written at `position` would be (the hand-over's transaction)."""
    table = Table(boto3.client("dynamodb"), "test-recovery")
    return transact(table, [{"ConditionCheck": journal.free_check(COMPANY, position)}]) is None


class HeldAppend:
    """An append whose write waits, after its position is reserved, until released (or dies when told to)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, journal: Journal, clock: FakeClock, text: str) -> None:
        self.reserved, self.release = threading.Event(), threading.Event()
        self.die = False
        self.positions: list[int] = []
        real_fill = Sequence.fill
        name = f"held-{text}"

        def fill(self_: Sequence, item: dict[str, Any], match: Any) -> Taken | None:
            if threading.current_thread().name == name and not self.reserved.is_set():
                self.reserved.set()
                assert self.release.wait(10)
                if self.die:
                    raise Died
            return real_fill(self_, item, match)

        monkeypatch.setattr(Sequence, "fill", fill)
        self.thread = threading.Thread(name=name, target=self._run, args=(journal, clock, text))
        self.thread.start()
        assert self.reserved.wait(10)

    def _run(self, journal: Journal, clock: FakeClock, text: str) -> None:
        with contextlib.suppress(Died):
            self.positions.append(append(journal, clock, text))

    def finish(self) -> None:
        self.release.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


def test_two_appends_at_once_take_distinct_positions_and_are_replayed_in_order(
    journal: Journal, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both reserve before either writes: neither waits for or retries after the other."""
    both = threading.Barrier(2, timeout=60)
    real_fill = Sequence.fill
    calls: list[str] = []

    def fill(self_: Sequence, item: dict[str, Any], match: Any) -> Taken | None:
        calls.append(threading.current_thread().name)
        both.wait()
        return real_fill(self_, item, match)

    monkeypatch.setattr(Sequence, "fill", fill)
    positions: dict[str, int] = {}
    errors: list[BaseException] = []

    def appender(text: str) -> None:
        try:
            positions[text] = append(journal, clock, text)
        except BaseException as error:  # shown below rather than lost in the thread
            errors.append(error)

    threads = [threading.Thread(name=text, target=appender, args=(text,)) for text in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(positions.values()) == [1, 2]
    assert sorted(calls) == ["a", "b"]  # one write each: no lost race
    by_position = sorted((position, text) for text, position in positions.items())
    assert replayed(journal, 0) == (by_position, 2, True)
    assert replayed(journal, 1) == (by_position[1:], 2, True)


def test_a_reader_meeting_a_position_not_yet_written_stops_below_it_and_a_cut_there_is_refused(
    journal: Journal, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Position 2 is reserved by a slow writer, 3 is written. The replay stops at 1 (the cut a hand-over takes),
    and the hand-over's memberships from 2 are refused while 2 and 3 are reserved (3's broadcast may have read the
    room before them); once 2 is written, the replay is 2 then 3 and a cut after 3 holds."""
    assert append(journal, clock, "first") == 1
    slow = HeldAppend(monkeypatch, journal, clock, "slow")  # position 2
    assert append(journal, clock, "third") == 3
    assert replayed(journal, 0) == ([(1, "first")], 1, True)
    assert replayed(journal, 1) == ([], 1, True)
    assert not cut_holds(journal, 2)
    # A new session or a join takes its cut at the last position reserved: it does not wait for the slow writer
    # (whose event, reserved before, reads the room after and skips the membership: it is before the join).
    assert journal.head(COMPANY) == 3
    assert cut_holds(journal, 4)
    slow.finish()
    assert slow.positions == [2]
    assert replayed(journal, 1) == ([(2, "slow"), (3, "third")], 3, True)
    assert cut_holds(journal, 4)
    assert not cut_holds(journal, 3)


def test_a_read_after_a_position_above_one_not_yet_written_reads_on_from_there(
    journal: Journal, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decision 0108: a new session's cut is the last position reserved, which may be above one still being written
    (or whose writer died). What follows the cut is read from the cut, up to its own first unwritten position: the
    lower one, before the cut, does not hold it back."""
    assert append(journal, clock, "first") == 1
    dead = HeldAppend(monkeypatch, journal, clock, "dead")  # position 2, never written
    dead.die = True
    dead.finish()
    assert append(journal, clock, "third") == 3
    assert append(journal, clock, "fourth") == 4
    assert replayed(journal, 1) == ([], 1, True)  # the replay after 1 stops below 2
    assert replayed(journal, 2) == ([(3, "third"), (4, "fourth")], 4, True)
    assert replayed(journal, 3) == ([(4, "fourth")], 4, True)
    assert replayed(journal, 4) == ([], 4, True)
    later = HeldAppend(monkeypatch, journal, clock, "later")  # position 5, being written
    assert append(journal, clock, "sixth") == 6
    assert replayed(journal, 3) == ([(4, "fourth")], 4, True)  # stops below 5, as ever
    later.finish()
    assert replayed(journal, 3) == ([(4, "fourth"), (5, "later"), (6, "sixth")], 6, True)
    span = journal.read_after(COMPANY, 3, 2)
    assert span is None  # more than the limit


def test_a_writer_that_dies_after_reserving_holds_the_head_for_a_minute_then_its_position_is_skipped(
    journal: Journal, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = HeldAppend(monkeypatch, journal, clock, "lost")  # position 1
    dead.die = True
    dead.finish()
    assert append(journal, clock, "b") == 2
    clock.at += LIFE
    assert replayed(journal, 0) == ([], 0, True)  # the writer of 1 may still be alive
    assert journal.head(COMPANY) == 2  # a new session's or a join's cut does not wait for it
    clock.at += timedelta(milliseconds=1)
    assert replayed(journal, 0) == ([(2, "b")], 2, True)
    skipped = entry_at(1)
    assert skipped is not None
    assert skipped["skipped"] is True
    assert "ttl" in skipped  # a skip expires with the entries
    assert append(journal, clock, "c") == 3


def test_a_late_writer_presumed_dead_meets_the_skip_and_appends_at_a_new_position(
    journal: Journal, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    late = HeldAppend(monkeypatch, journal, clock, "late")  # position 1
    assert append(journal, clock, "b") == 2
    clock.at += LIFE + timedelta(milliseconds=1)
    assert replayed(journal, 0) == ([(2, "b")], 2, True)  # 1 skipped
    late.finish()
    assert late.positions == [3]
    assert replayed(journal, 0) == ([(2, "b"), (3, "late")], 3, True)


def test_an_expired_entry_below_the_head_makes_the_replay_incomplete(journal: Journal, clock: FakeClock) -> None:
    """Below the committed head nothing is skipped: a missing entry there was removed by its TTL."""
    for text in ("a", "b", "c"):
        append(journal, clock, text)
    assert replayed(journal, 0)[1:] == (3, True)  # the reader raised the committed hint to 3
    boto3.resource("dynamodb").Table("test-recovery").delete_item(Key={"pk": PK, "sk": f"{2:012d}"})
    clock.at += LIFE * 2
    assert replayed(journal, 0) == ([(1, "a"), (3, "c")], 3, False)


def write_the_old_way(*positions: int) -> None:
    """Entries as the journal wrote them before decision 0102, each at the last + 1: no counter, no storedAt."""
    table = boto3.resource("dynamodb").Table("test-recovery")
    for position in positions:
        frame = json.dumps({"event": "x", "data": f"old{position}"})
        table.put_item(Item={"pk": PK, "sk": f"{position:012d}", "room": "company:acme", "frame": frame, "ttl": 0})


def test_entries_written_before_the_counter_are_followed_not_overwritten(journal: Journal, clock: FakeClock) -> None:
    write_the_old_way(1, 2, 3)
    assert journal.head(COMPANY) == 3
    assert append(journal, clock, "new") == 4
    assert replayed(journal, 2) == ([(3, "old3"), (4, "new")], 4, True)


def test_after_the_old_entries_expired_the_counter_starts_from_the_last_one_not_from_one(
    journal: Journal, clock: FakeClock
) -> None:
    """Positions 1 to 4 expired (TTL) before the first append of the new code: the counter must not hand out 1
    again, which would put a new event below ones sessions hold offsets for."""
    write_the_old_way(5)
    assert append(journal, clock, "new") == 6
    assert entry_at(1) is None
