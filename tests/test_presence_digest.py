"""Presence digests (docs/protocol.md, decision 0089): in a company with more users online than
PRESENCE_DIGEST_THRESHOLD, presence changes are coalesced into `presence:changed` digests, one flush scheduled at
a time, each change announced once and none lost, whatever runs beside the flush; a small company still gets
`status:online` / `status:offline` at once."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from roomcast_local.testing import (
    Peer,
    QueuedDeferrer,
    QueuedDelayer,
    RecordingGateway,
    invoke,
    publish,
    run_delayed,
    sqs_event,
)
from shared.delivery.delayed import DelayedTask, DigestDue, OfflineDue, parse_delayed
from shared.domain.presence import coalesces, digest_frames, digest_interval, net_changes
from shared.protocol.frames import encode
from shared.stores.dynamo import Table
from shared.stores.presence_digest import PendingChange, PresenceDigestStore, user_shard
from shared.wiring import services as runtime
from shared.wiring.services import Services, build_services
from shared.wiring.settings import settings
from tests.conftest import Interleaver

THRESHOLD = 3
GRACE = 30
NOW_DIGEST = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def _built(
    monkeypatch: pytest.MonkeyPatch,
    gateway: RecordingGateway,
    session: boto3.session.Session,
    deferred: QueuedDeferrer,
    delayed: QueuedDelayer,
    grace: int,
) -> Iterator[Services]:
    monkeypatch.setenv("PRESENCE_GRACE_SECONDS", str(grace))
    monkeypatch.setenv("PRESENCE_DIGEST_THRESHOLD", str(THRESHOLD))
    monkeypatch.setenv("PRESENCE_POSTS_PER_SECOND", "2")
    settings.cache_clear()
    built = build_services(settings(), gateway=gateway, session=session, deferrer=deferred, delayer=delayed)
    runtime.install(built)
    yield built
    runtime.install(None)
    settings.cache_clear()


@pytest.fixture
def digested(
    aws: None,
    interleaver: Interleaver,
    gateway: RecordingGateway,
    deferred: QueuedDeferrer,
    delayed: QueuedDelayer,
    session: boto3.session.Session,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Services]:
    """Offline at once (no grace), digests past 3 users online, 2 presence posts a second."""
    yield from _built(monkeypatch, gateway, session, deferred, delayed, grace=0)


@pytest.fixture
def graced(
    aws: None,
    interleaver: Interleaver,
    gateway: RecordingGateway,
    deferred: QueuedDeferrer,
    delayed: QueuedDelayer,
    session: boto3.session.Session,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Services]:
    yield from _built(monkeypatch, gateway, session, deferred, delayed, grace=GRACE)


def statuses(peer: Peer) -> list[tuple[str, str]]:
    return [(f["event"], f["data"]["userId"]) for f in peer.received() if f["event"].startswith("status:")]


def digests(peer: Peer) -> list[tuple[list[str], list[str]]]:
    return [(f["data"]["online"], f["data"]["offline"]) for f in peer.received("presence:changed")]


def large_company(gateway: RecordingGateway) -> Peer:
    """acme with THRESHOLD users online, each announced on their own; returns the first, who hears the rest."""
    ana = Peer(gateway, "ana-1", "ana", "acme").connect()
    for user in ("ben", "cat"):
        Peer(gateway, f"{user}-1", user, "acme").connect()
    assert statuses(ana) == [("status:online", "ben"), ("status:online", "cat")]
    return ana


def digest_tasks(delayed: QueuedDelayer) -> list[tuple[DigestDue, int]]:
    return [(task, seconds) for task, seconds in delayed.tasks if isinstance(task, DigestDue)]


def run(tasks: list[DelayedTask], message_id: str | None = None) -> dict[str, Any]:
    event = sqs_event([json.dumps(task.model_dump(by_alias=True, mode="json")) for task in tasks])
    if message_id is not None:
        for record in event["Records"]:
            record["messageId"] = message_id
    result: dict[str, Any] = invoke("handlers.delayed.handler", event)
    return result


# ---- pure decisions ----


def test_a_change_joins_a_digest_past_the_threshold_or_while_one_is_due() -> None:
    assert not coalesces(online=500, threshold=500, digest_scheduled=False)
    assert coalesces(online=501, threshold=500, digest_scheduled=False)
    # Back under the threshold, a digest still due takes the change: it may hold this user's earlier one.
    assert coalesces(online=499, threshold=500, digest_scheduled=True)


def test_digests_come_as_rarely_as_keeps_the_company_within_its_posts_a_second() -> None:
    assert digest_interval(online=501, posts_per_second=500) == 2
    assert digest_interval(online=10_000, posts_per_second=500) == 20
    assert digest_interval(online=4, posts_per_second=500) == 1
    assert digest_interval(online=10**9, posts_per_second=1) == 900  # SQS's longest delay


def test_a_user_who_came_and_went_within_an_interval_is_no_change() -> None:
    changes = [
        PendingChange("ana", was_online=False, online=True),
        PendingChange("ben", was_online=True, online=False),
        PendingChange("cat", was_online=False, online=False),  # came, then went
        PendingChange("dan", was_online=True, online=True),  # went, then came back
    ]
    assert net_changes(changes) == (["ana"], ["ben"])


def test_a_digest_too_large_for_one_frame_is_split_and_loses_no_one() -> None:
    online = [f"user-{index:05}" for index in range(3000)]
    offline = [f"gone-{index:05}" for index in range(1000)]
    frames = digest_frames(online, offline, max_bytes=8192)
    assert len(frames) > 1
    assert all(len(encode(frame).encode("utf-8")) <= 8192 for frame in frames)
    assert [user for frame in frames for user in frame["data"]["online"]] == online
    assert [user for frame in frames for user in frame["data"]["offline"]] == offline
    assert digest_frames([], [], 8192) == []


def test_a_digest_task_is_told_from_a_grace_end() -> None:
    assert isinstance(parse_delayed('{"kind": "digest", "companyId": "acme", "digest": "t"}'), DigestDue)
    grace_end = '{"kind": "offline", "companyId": "acme", "userId": "a", "grace": "g"}'
    assert isinstance(parse_delayed(grace_end), OfflineDue)


# ---- small and large companies ----


def test_a_small_company_hears_each_change_at_once_and_schedules_no_digest(
    digested: Services, gateway: RecordingGateway, delayed: QueuedDelayer
) -> None:
    ana = large_company(gateway)
    Peer(gateway, "cat-1", "cat", "acme").disconnect()
    assert statuses(ana)[-1] == ("status:offline", "cat")
    assert digest_tasks(delayed) == []


def test_past_the_threshold_changes_wait_for_one_digest_to_everyone(
    digested: Services, gateway: RecordingGateway, delayed: QueuedDelayer
) -> None:
    ana = large_company(gateway)
    dan = Peer(gateway, "dan-1", "dan", "acme").connect()  # the fourth user online: past the threshold
    Peer(gateway, "eve-1", "eve", "acme").connect()
    Peer(gateway, "ben-1", "ben", "acme").disconnect()
    assert statuses(ana) == [("status:online", "ben"), ("status:online", "cat")]
    # Three changes, one flush, delayed by the interval that keeps 4 posts within 2 a second.
    assert [seconds for _, seconds in digest_tasks(delayed)] == [2]
    assert run_delayed() == {"batchItemFailures": []}
    assert digests(ana) == [(["dan", "eve"], ["ben"])]
    assert digests(dan) == [(["dan", "eve"], ["ben"])]
    assert digests(Peer(gateway, "ben-1", "ben", "acme")) == []  # gone before it was sent


def test_another_companys_presence_is_neither_counted_nor_digested(
    digested: Services, gateway: RecordingGateway, delayed: QueuedDelayer
) -> None:
    large_company(gateway)
    Peer(gateway, "dan-1", "dan", "acme").connect()
    zed = Peer(gateway, "zed-1", "zed", "globex").connect()
    yan = Peer(gateway, "yan-1", "yan", "globex").connect()
    assert statuses(zed) == [("status:online", "yan")]
    run_delayed()
    assert digests(zed) == digests(yan) == []


def test_a_user_who_came_and_went_within_the_interval_is_not_announced(
    digested: Services, gateway: RecordingGateway, delayed: QueuedDelayer
) -> None:
    ana = large_company(gateway)
    Peer(gateway, "dan-1", "dan", "acme").connect()
    eve = Peer(gateway, "eve-1", "eve", "acme").connect()
    eve.disconnect()
    run_delayed()
    assert digests(ana) == [(["dan"], [])]


def test_after_a_digest_the_next_change_schedules_the_next(
    digested: Services, gateway: RecordingGateway, delayed: QueuedDelayer
) -> None:
    ana = large_company(gateway)
    Peer(gateway, "dan-1", "dan", "acme").connect()
    Peer(gateway, "eve-1", "eve", "acme").connect()
    run_delayed()
    Peer(gateway, "dan-1", "dan", "acme").disconnect()  # 4 online: still large
    assert len(digest_tasks(delayed)) == 1
    run_delayed()
    assert digests(ana) == [(["dan", "eve"], []), ([], ["dan"])]


# ---- crossing the threshold ----


def test_a_company_falling_under_the_threshold_with_a_digest_due_keeps_its_order(
    digested: Services, gateway: RecordingGateway, delayed: QueuedDelayer
) -> None:
    """dan's online is in the digest due; the company falls back to 3, then dan leaves: announced on his own,
    his offline would reach colleagues before the online the digest holds. Both go into that digest (net nothing),
    and once it is out, changes are announced on their own again."""
    ana = large_company(gateway)
    dan = Peer(gateway, "dan-1", "dan", "acme").connect()
    dan.disconnect()  # 3 online again, but a digest is due
    Peer(gateway, "cat-1", "cat", "acme").disconnect()  # 2 online
    assert statuses(ana) == [("status:online", "ben"), ("status:online", "cat")]
    assert len(digest_tasks(delayed)) == 1
    run_delayed()
    assert digests(ana) == [([], ["cat"])]
    Peer(gateway, "ben-1", "ben", "acme").disconnect()
    assert statuses(ana)[-1] == ("status:offline", "ben")
    assert digest_tasks(delayed) == []


def test_a_company_growing_past_the_threshold_digests_from_the_first_change_past_it(
    digested: Services, gateway: RecordingGateway, delayed: QueuedDelayer
) -> None:
    ana = large_company(gateway)
    assert digest_tasks(delayed) == []
    Peer(gateway, "dan-1", "dan", "acme").connect()
    assert statuses(ana) == [("status:online", "ben"), ("status:online", "cat")]
    assert len(digest_tasks(delayed)) == 1


# ---- a flush meeting changes ----


def test_a_connect_landing_after_the_flush_closed_its_digest_goes_to_the_next(
    digested: Services, gateway: RecordingGateway, delayed: QueuedDelayer, interleaver: Interleaver
) -> None:
    ana = large_company(gateway)
    Peer(gateway, "dan-1", "dan", "acme").connect()
    ((task, _),) = delayed.take()
    assert isinstance(task, DigestDue)

    @interleaver.before("Query", f"presencedigest#acme#{task.digest}")
    def eve_connects() -> None:
        Peer(gateway, "eve-1", "eve", "acme").connect()

    assert run([task]) == {"batchItemFailures": []}
    assert interleaver.fired == ["Query"]
    assert digests(ana) == [(["dan"], [])]
    ((following, _),) = digest_tasks(delayed)
    assert following.digest != task.digest
    run_delayed()
    assert digests(ana) == [(["dan"], []), (["eve"], [])]


def test_a_disconnect_landing_before_the_flush_closed_its_digest_is_in_it(
    digested: Services, gateway: RecordingGateway, delayed: QueuedDelayer, interleaver: Interleaver
) -> None:
    ana = large_company(gateway)
    Peer(gateway, "dan-1", "dan", "acme").connect()
    ((task, _),) = delayed.take()
    assert isinstance(task, DigestDue)

    @interleaver.before("UpdateItem", "presencedigest#acme", "flush", "REMOVE")
    def ben_disconnects() -> None:
        Peer(gateway, "ben-1", "ben", "acme").disconnect()

    run([task])
    assert interleaver.fired == ["UpdateItem"]
    assert digests(ana) == [(["dan"], ["ben"])]
    assert digest_tasks(delayed) == []  # nothing left for another


def test_a_change_whose_digest_is_closed_between_its_read_and_its_write_joins_the_next(
    digested: Services, gateway: RecordingGateway, delayed: QueuedDelayer, interleaver: Interleaver
) -> None:
    """eve's change read digest 1 as due; digest 1 is flushed before her write lands: her transaction's check
    fails, and she schedules digest 2 rather than writing into one nobody will read."""
    ana = large_company(gateway)
    Peer(gateway, "dan-1", "dan", "acme").connect()
    ((task, _),) = delayed.take()
    assert isinstance(task, DigestDue)

    @interleaver.before("TransactWriteItems", f"presencedigest#acme#{task.digest}", "user#eve")
    def the_digest_is_flushed() -> None:
        run([task])

    Peer(gateway, "eve-1", "eve", "acme").connect()
    assert interleaver.fired == ["TransactWriteItems"]
    assert digests(ana) == [(["dan"], [])]
    run_delayed()
    assert digests(ana) == [(["dan"], []), (["eve"], [])]


def test_changes_racing_to_schedule_a_digest_schedule_one(
    digested: Services, gateway: RecordingGateway, delayed: QueuedDelayer, interleaver: Interleaver
) -> None:
    """eve's change finds no digest due and is about to make one when dan's change makes it first: eve joins
    dan's, and only one flush is queued."""
    ana = large_company(gateway)

    @interleaver.before("UpdateItem", "presencedigest#acme", "flush", "attribute_not_exists")
    def dan_first() -> None:
        Peer(gateway, "dan-1", "dan", "acme").connect()

    Peer(gateway, "eve-1", "eve", "acme").connect()
    assert interleaver.fired == ["UpdateItem"]
    assert len(digest_tasks(delayed)) == 1
    run_delayed()
    assert digests(ana) == [(["dan", "eve"], [])]


# ---- two flushes of one digest ----


def test_a_digest_delivered_twice_is_announced_once(
    digested: Services, gateway: RecordingGateway, delayed: QueuedDelayer
) -> None:
    ana = large_company(gateway)
    Peer(gateway, "dan-1", "dan", "acme").connect()
    ((task, _),) = delayed.take()
    assert run([task], "m-1") == {"batchItemFailures": []}
    assert run([task], "m-2") == {"batchItemFailures": []}  # another copy of it
    assert run([task], "m-1") == {"batchItemFailures": []}  # the same, after it was announced
    assert digests(ana) == [(["dan"], [])]


def test_two_copies_of_a_digest_running_side_by_side_announce_once(
    digested: Services, gateway: RecordingGateway, delayed: QueuedDelayer, interleaver: Interleaver
) -> None:
    ana = large_company(gateway)
    Peer(gateway, "dan-1", "dan", "acme").connect()
    ((task, _),) = delayed.take()
    assert isinstance(task, DigestDue)
    ran: list[dict[str, Any]] = []

    @interleaver.before("Query", f"presencedigest#acme#{task.digest}")
    def the_other_copy() -> None:
        ran.append(run([task], "m-2"))

    assert run([task], "m-1") == {"batchItemFailures": []}
    assert ran == [{"batchItemFailures": []}]
    assert digests(ana) == [(["dan"], [])]


def test_a_digest_whose_announcement_failed_is_announced_on_redelivery(
    digested: Services, gateway: RecordingGateway, delayed: QueuedDelayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ana = large_company(gateway)
    Peer(gateway, "dan-1", "dan", "acme").connect()
    ((task, _),) = delayed.take()
    real = digested.rooms.members

    def throttled(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("throttled")

    monkeypatch.setattr(digested.rooms, "members", throttled)
    assert len(run([task], "m-1")["batchItemFailures"]) == 1
    monkeypatch.setattr(digested.rooms, "members", real)
    # A change meanwhile goes to the next digest: the failed one is closed.
    Peer(gateway, "eve-1", "eve", "acme").connect()
    assert run([task], "m-1") == {"batchItemFailures": []}
    assert digests(ana) == [(["dan"], [])]
    run_delayed()
    assert digests(ana) == [(["dan"], []), (["eve"], [])]


class FailingDelayer(QueuedDelayer):
    def delay(self, _task: DelayedTask, _seconds: int) -> None:
        raise RuntimeError("SQS is unavailable")


def test_a_digest_that_cannot_be_queued_is_announced_at_once_rather_than_never(
    digested: Services, gateway: RecordingGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    ana = large_company(gateway)
    monkeypatch.setattr(digested.presence, "_delayer", FailingDelayer())
    Peer(gateway, "dan-1", "dan", "acme").connect()
    assert digests(ana) == [(["dan"], [])]
    Peer(gateway, "eve-1", "eve", "acme").connect()  # the digest was closed: the next one is made, and flushed
    assert digests(ana) == [(["dan"], []), (["eve"], [])]


# ---- the grace ----


def test_a_user_within_the_grace_is_not_in_the_digest_and_its_end_is_in_the_next(
    graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer
) -> None:
    ana = large_company(gateway)
    Peer(gateway, "dan-1", "dan", "acme").connect()
    Peer(gateway, "eve-1", "eve", "acme").connect()
    Peer(gateway, "ben-1", "ben", "acme").disconnect()  # ben's grace begins
    graces = [task for task, _ in delayed.tasks if isinstance(task, OfflineDue)]
    (digest,) = [task for task, _ in delayed.take() if isinstance(task, DigestDue)]
    run([digest])
    assert digests(ana) == [(["dan", "eve"], [])]  # ben is still present
    run(list(graces))  # the grace ends: ben's offline joins a new digest
    assert statuses(ana) == [("status:online", "ben"), ("status:online", "cat")]
    run_delayed()
    assert digests(ana) == [(["dan", "eve"], []), ([], ["ben"])]


def test_a_reconnect_within_the_grace_is_in_no_digest(
    graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer
) -> None:
    ana = large_company(gateway)
    Peer(gateway, "dan-1", "dan", "acme").connect()
    Peer(gateway, "ben-1", "ben", "acme").disconnect()
    Peer(gateway, "ben-2", "ben", "acme").connect()
    run_delayed()  # dan's digest and ben's grace end, which finds him back
    run_delayed()
    assert digests(ana) == [(["dan"], [])]
    assert statuses(ana) == [("status:online", "ben"), ("status:online", "cat")]


def test_a_kick_in_a_large_company_is_in_the_next_digest(
    graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer
) -> None:
    ana = large_company(gateway)
    Peer(gateway, "dan-1", "dan", "acme").connect()
    Peer(gateway, "eve-1", "eve", "acme").connect()
    run_delayed()
    publish("Disconnect", {"companyId": "acme", "userId": "cat"})
    assert digests(ana) == [(["dan", "eve"], [])]  # not at once: the company is large
    run_delayed()
    assert digests(ana)[-1] == ([], ["cat"])


# ---- the count and the changes in shards (decision 0099) ----


def digest_store() -> PresenceDigestStore:
    return PresenceDigestStore(Table(boto3.client("dynamodb"), "test-connections"))


def test_two_shards_of_the_count_updated_at_once_sum_exactly(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    store = digest_store()
    both_ready = threading.Barrier(2)

    def shard(_: int) -> int:
        both_ready.wait()  # each writer holds its shard until the other has chosen its own: the writes overlap
        return {"a": 0, "b": 1}[threading.current_thread().name[0]]

    monkeypatch.setattr("shared.stores.presence_digest.random.randrange", shard)

    def writer(delta: int) -> None:
        for _ in range(5):
            store.add("acme", delta)

    writers = [threading.Thread(target=writer, args=(delta,), name=name) for name, delta in (("a-w", +1), ("b-w", -1))]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    table = boto3.resource("dynamodb").Table("test-connections")
    shard_0 = table.get_item(Key={"pk": "presencedigest#acme", "sk": "online"})["Item"]
    shard_1 = table.get_item(Key={"pk": "presencecount#acme#1", "sk": "online"})["Item"]
    assert (shard_0["online"], shard_1["online"]) == (5, -5)
    assert store.online("acme") == 0


def test_the_count_summed_while_changes_land_is_between_before_and_after(aws: None) -> None:
    store = digest_store()
    for _ in range(10):
        store.add("acme", +1)
    done = threading.Event()
    seen: list[int] = []

    def reader() -> None:
        while not done.is_set():
            seen.append(store.online("acme"))

    thread = threading.Thread(target=reader)
    thread.start()
    for _ in range(30):
        store.add("acme", +1)
    done.set()
    thread.join()
    assert seen
    # Each shard is read consistently after every addition it had taken: a sum never loses one it saw before.
    assert all(10 <= total <= 40 for total in seen)
    assert seen == sorted(seen)
    assert store.online("acme") == 40


def test_the_count_kept_before_the_shards_stays_in_the_sum(aws: None) -> None:
    table = boto3.resource("dynamodb").Table("test-connections")
    table.put_item(Item={"pk": "presencedigest#acme", "sk": "online", "online": 7})  # the unsharded count
    store = digest_store()
    assert store.online("acme") == 7
    store.add("acme", +1)
    assert store.online("acme") == 8


def test_a_change_while_a_digest_is_due_does_not_read_the_count(
    digested: Services, gateway: RecordingGateway, delayed: QueuedDelayer, interleaver: Interleaver
) -> None:
    large_company(gateway)
    Peer(gateway, "dan-1", "dan", "acme").connect()  # past the threshold: schedules a digest
    assert len(digest_tasks(delayed)) == 1

    @interleaver.before("BatchGetItem", "presencecount#acme")
    def summed() -> None:
        pass

    Peer(gateway, "eve-1", "eve", "acme").connect()
    assert interleaver.fired == []  # eve joined the digest due without summing the shards
    run_delayed()


def test_a_change_landing_while_the_flush_reads_its_shards_goes_to_the_next(
    digested: Services, gateway: RecordingGateway, delayed: QueuedDelayer, interleaver: Interleaver
) -> None:
    """The flush has closed its digest and read shards 0 to 11 (dan's): eve's change, in shard 15, not yet read,
    lands now; it joins the next digest, not this one's unread shard."""
    assert (user_shard("dan"), user_shard("eve")) == (11, 15)
    ana = large_company(gateway)
    Peer(gateway, "dan-1", "dan", "acme").connect()
    ((task, _),) = delayed.take()
    assert isinstance(task, DigestDue)

    @interleaver.before("Query", f"presencedigest#acme#{task.digest}#12")
    def eve_connects() -> None:
        Peer(gateway, "eve-1", "eve", "acme").connect()

    run([task])
    assert interleaver.fired == ["Query"]
    assert digests(ana) == [(["dan"], [])]
    run_delayed()
    assert digests(ana) == [(["dan"], []), (["eve"], [])]


def test_a_digests_changes_written_before_the_shards_are_announced(
    digested: Services, gateway: RecordingGateway, delayed: QueuedDelayer
) -> None:
    """A digest scheduled before the deploy holds its changes under its own key: the flush reads that as shard 0."""
    ana = large_company(gateway)
    Peer(gateway, "dan-1", "dan", "acme").connect()
    ((task, _),) = delayed.take()
    assert isinstance(task, DigestDue)
    table = boto3.resource("dynamodb").Table("test-connections")
    pk = f"presencedigest#acme#{task.digest}"
    table.put_item(Item={"pk": pk, "sk": "user#gus", "was": False, "now": True})  # written in the old layout
    run([task])
    assert digests(ana) == [(["dan", "gus"], [])]


def test_a_change_that_read_the_digest_before_its_close_and_lands_before_the_markers_is_in_it(
    digested: Services, gateway: RecordingGateway, delayed: QueuedDelayer, interleaver: Interleaver
) -> None:
    """eve's change read `flush` naming digest 1; the flush removes that name before eve's write lands, but has
    not marked eve's shard closed yet: her write lands, and the flush, reading after its markers, announces it."""
    ana = large_company(gateway)
    Peer(gateway, "dan-1", "dan", "acme").connect()
    ((task, _),) = delayed.take()
    assert isinstance(task, DigestDue)
    table = boto3.resource("dynamodb").Table("test-connections")

    @interleaver.before("TransactWriteItems", f"presencedigest#acme#{task.digest}", "user#eve")
    def the_flush_removes_its_name() -> None:
        table.update_item(Key={"pk": "presencedigest#acme", "sk": "flush"}, UpdateExpression="REMOVE flush")

    Peer(gateway, "eve-1", "eve", "acme").connect()
    assert interleaver.fired == ["TransactWriteItems"]
    run([task])
    assert digests(ana) == [(["dan", "eve"], [])]
    assert digest_tasks(delayed) == []  # eve's change was in digest 1: nothing for another


def test_a_closed_shard_refuses_a_change_that_read_the_digest_before_its_close(aws: None) -> None:
    store = digest_store()
    token, made = store.schedule("acme")
    assert made
    assert store.record("acme", token, "eve", True, NOW_DIGEST)
    store.close("acme", token, NOW_DIGEST)
    assert not store.record("acme", token, "dan", True, NOW_DIGEST)  # read `flush` before the close: refused
    assert [change.user_id for change in store.changes("acme", token)] == ["eve"]
