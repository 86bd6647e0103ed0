"""Rooms past the large-room threshold: the request hands the room off and replies; chunk workers post to it within
the shared posts-per-second budget (decision 0052). Small numbers stand in for 500 and 5000."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from roomcast_local.testing import ManualClock, Peer, QueuedDeferrer, RecordingGateway, run_deferred
from shared.delivery.deferred import BroadcastChunk, ConnectionsGone, Recipient, RoomBroadcast
from shared.delivery.management_api import Delivery
from shared.protocol.codec import Codec
from shared.protocol.frames import event_frame
from shared.protocol.rooms import company_room, conversation_room
from shared.stores.budget import PostBudget
from shared.stores.dynamo import Table
from shared.stores.rooms import membership_pk
from shared.wiring import services as runtime
from shared.wiring.services import Services, build_services
from shared.wiring.settings import settings
from tests.conftest import TABLE_NAMES

THRESHOLD = 5
CHUNK = 4
BATCH = 3
PER_SECOND = 6


START = datetime(2026, 11, 26, 3, 44, 21, 500000, tzinfo=UTC)


class TimedGateway(RecordingGateway):
    """Records the (fake) second each post was sent in."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__()
        self.clock = clock
        self.seconds: Counter[int] = Counter()

    def post_many(self, connection_ids: Sequence[str], data: bytes) -> list[Delivery]:
        self.seconds[int(self.clock.now().timestamp())] += len(connection_ids)
        return super().post_many(connection_ids, data)


@pytest.fixture
def frozen(clock: ManualClock) -> ManualClock:
    """Time moves only when a worker waits."""
    clock.set(START)
    return clock


@pytest.fixture
def timed(frozen: ManualClock) -> TimedGateway:
    return TimedGateway(frozen)


@pytest.fixture
def rooms(
    aws: None,
    timed: TimedGateway,
    deferred: QueuedDeferrer,
    frozen: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Services]:
    for name, value in {
        "LARGE_ROOM_THRESHOLD": THRESHOLD,
        "BROADCAST_CHUNK": CHUNK,
        "FANOUT_CONCURRENCY": BATCH,
        "POSTS_PER_SECOND": PER_SECOND,
    }.items():
        monkeypatch.setenv(name, str(value))
    settings.cache_clear()
    deferred.clock = frozen  # a chunk sent back for its budget is received after its delay, on the same clock
    built = build_services(settings(), gateway=timed, deferrer=deferred, clock=frozen)
    runtime.install(built)
    yield built
    runtime.install(None)
    settings.cache_clear()


def add_members(room_key: str, connection_ids: list[str], codec: Codec = Codec.NATIVE) -> None:
    """Memberships written straight into the room (each in its partition of the room): joining through the
    handlers would measure nothing here."""
    table = boto3.resource("dynamodb").Table(TABLE_NAMES["ConnectionsTable"])
    with table.batch_writer() as batch:
        for connection_id in connection_ids:
            item = {"pk": membership_pk(room_key, connection_id), "sk": connection_id, "userId": f"u-{connection_id}"}
            if codec is not Codec.NATIVE:
                item["codec"] = str(codec)
            batch.put_item(Item=item)


def conversation_of(sender: Peer, members: int) -> tuple[str, list[str]]:
    conversation = sender.ok("conversation:create", {})["conversation"]["id"]
    others = [f"m-{index:03d}" for index in range(members - 1)]
    add_members(conversation_room(conversation).key("acme"), others)
    return conversation, [sender.connection_id, *others]


def new_messages(gateway: RecordingGateway, connection_id: str) -> int:
    return len(gateway.events(connection_id, "message:new"))


def test_a_room_at_the_threshold_is_posted_to_inside_the_request(rooms: Services, timed: TimedGateway) -> None:
    deferrer = rooms.deferrer
    assert isinstance(deferrer, QueuedDeferrer)
    deferrer.auto = False
    sender = Peer(timed, "sender", "u-s", "acme").connect()
    run_deferred()
    conversation, members = conversation_of(sender, THRESHOLD)
    run_deferred()
    timed.clear()
    sender.ok("message:send", {"conversationId": conversation, "content": "hi"})
    # Everyone has it before anything handed off has run.
    assert [new_messages(timed, member) for member in members] == [1] * THRESHOLD
    assert not [task for task in deferrer.take() if isinstance(task, RoomBroadcast | BroadcastChunk)]


def test_past_the_threshold_the_request_hands_the_room_off_and_each_member_gets_the_event_once(
    rooms: Services, timed: TimedGateway
) -> None:
    deferrer = rooms.deferrer
    assert isinstance(deferrer, QueuedDeferrer)
    deferrer.auto = False
    sender = Peer(timed, "sender", "u-s", "acme").connect()
    run_deferred()
    conversation, members = conversation_of(sender, 3 * CHUNK + 1)
    run_deferred()
    timed.clear()
    reply = sender.ok("message:send", {"conversationId": conversation, "content": "hi"})
    assert reply["seq"] == 1
    # The reply came before any post: one hand-off of the whole room, nothing else.
    assert [new_messages(timed, member) for member in members] == [0] * len(members)
    handed = deferrer.take()
    broadcasts = [task for task in handed if isinstance(task, RoomBroadcast)]
    assert len(broadcasts) == 1
    assert (broadcasts[0].company_id, broadcasts[0].room) == ("acme", f"conversation:{conversation}")
    for task in handed:
        deferrer.defer(task)
    run_deferred()
    assert [new_messages(timed, member) for member in members] == [1] * len(members)


def test_the_split_is_in_chunks_of_one_worker_each_without_the_excluded_member(rooms: Services) -> None:
    room = company_room("acme")
    members = [f"c-{index:02d}" for index in range(2 * CHUNK + 1)]
    add_members(room.key("acme"), members)
    deferrer = rooms.deferrer
    assert isinstance(deferrer, QueuedDeferrer)
    frame = event_frame("conversation:typing", {"userId": "u-1"})
    handed = rooms.large_rooms.split(RoomBroadcast(companyId="acme", room=room.name, frame=frame, exclude="c-03"))
    chunks = deferrer.take()
    assert handed == len(chunks) == 2
    assert all(isinstance(chunk, BroadcastChunk) and len(chunk.recipients) == CHUNK for chunk in chunks)
    posted = [r.connection_id for chunk in chunks if isinstance(chunk, BroadcastChunk) for r in chunk.recipients]
    assert sorted(posted) == sorted(set(members) - {"c-03"})


def test_the_typing_user_does_not_hear_itself_in_a_large_room(rooms: Services, timed: TimedGateway) -> None:
    sender = Peer(timed, "typist", "u-t", "acme").connect()
    conversation, members = conversation_of(sender, 2 * THRESHOLD)
    timed.clear()
    sender.ok("conversation:typing", {"conversationId": conversation})
    heard = {member: len(timed.events(member, "conversation:typing")) for member in members}
    assert heard == {member: int(member != "typist") for member in members}


def test_a_large_room_reaches_only_its_own_company(rooms: Services, timed: TimedGateway) -> None:
    ours = [f"a-{index:02d}" for index in range(THRESHOLD + 1)]
    theirs = [f"b-{index:02d}" for index in range(THRESHOLD + 1)]
    add_members(company_room("acme").key("acme"), ours)
    # The same room name under another company: a different key, never this broadcast's.
    add_members(company_room("acme").key("globex"), theirs)
    report = rooms.hub.emit("acme", company_room("acme"), event_frame("campaign:started", {"name": "x"}))
    assert report.handed_off
    run_deferred()
    assert {member: len(timed.events(member)) for member in ours + theirs} == {
        **dict.fromkeys(ours, 1),
        **dict.fromkeys(theirs, 0),
    }


def test_chunk_workers_stay_within_the_posts_per_second_budget(
    rooms: Services, timed: TimedGateway, frozen: ManualClock
) -> None:
    members = [f"c-{index:02d}" for index in range(5 * CHUNK)]
    frame = event_frame("campaign:started", {"name": "x"})
    chunks = [
        BroadcastChunk(
            companyId="acme",
            room=company_room("acme").name,
            frame=frame,
            recipients=tuple(Recipient(connectionId=member) for member in members[start : start + CHUNK]),
        )
        for start in range(0, len(members), CHUNK)
    ]
    # Five chunks on the same clock and the same budget items, as concurrent workers share them; what a spent
    # second leaves goes back to the queue and is received after its delay.
    deferrer = rooms.deferrer
    assert isinstance(deferrer, QueuedDeferrer)
    for chunk in chunks:
        deferrer.defer(chunk)
    run_deferred()
    assert max(timed.seconds.values()) == PER_SECOND
    assert sum(timed.seconds.values()) == len(members)
    assert {member: len(timed.events(member)) for member in members} == dict.fromkeys(members, 1)
    assert frozen.now() > START


def test_two_budgets_on_one_table_share_one_second(aws: None) -> None:
    table = Table(boto3.client("dynamodb"), TABLE_NAMES["ConnectionsTable"])
    first, second = PostBudget(table, 10), PostBudget(table, 10)
    now = datetime(2026, 11, 26, 3, 44, 21, 100000, tzinfo=UTC)
    assert first.take(4, now) == 4
    assert second.take(4, now) == 4
    assert first.take(4, now) == 2  # what is left of the second
    assert second.take(4, now + timedelta(milliseconds=800)) == 0
    assert second.take(4, now + timedelta(seconds=1)) == 4


def test_members_a_chunk_worker_finds_gone_go_to_the_existing_clean_up(rooms: Services, timed: TimedGateway) -> None:
    room = conversation_room("c-1")
    timed.gone.add("c-02")
    chunk = BroadcastChunk(
        companyId="acme",
        room=room.name,
        frame=event_frame("message:new", {"id": "m"}),
        recipients=tuple(Recipient(connectionId=f"c-{index:02d}") for index in range(CHUNK)),
    )
    deferrer = rooms.deferrer
    assert isinstance(deferrer, QueuedDeferrer)
    report = rooms.large_rooms.post(chunk)
    assert (report.delivered, len(report.gone)) == (CHUNK - 1, 1)
    (task,) = deferrer.take()
    assert isinstance(task, ConnectionsGone)
    assert [(gone.connection_id, gone.room_key) for gone in task.recipients] == [("c-02", room.key("acme"))]
