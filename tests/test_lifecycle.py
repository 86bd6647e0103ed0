"""A connection's life under the interleavings Lambda allows (issue 10): $connect, $disconnect, routes and
the clean-up of gone connections running at the same moment, and the work a request does before its reply."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Key

from roomcast_local.testing import (
    ManualClock,
    Peer,
    QueuedDeferrer,
    RecordingGateway,
    deferrer,
    deliver,
    invoke,
    lifecycle_event,
    run_deferred,
)
from shared.protocol.frames import encode
from shared.protocol.identity import Identity
from shared.stores.rooms import hour_index_shard, room_partitions
from shared.wiring import services as runtime
from shared.wiring.services import Services, build_services
from shared.wiring.settings import settings
from tests.conftest import Interleaver, settle


def items(pk: str) -> list[dict[str, Any]]:
    """The items under `pk`; for a room, in every partition its memberships are spread over."""
    table = boto3.resource("dynamodb").Table("test-connections")
    return [
        dict(item)
        for part in room_partitions(pk)
        for item in table.query(KeyConditionExpression=Key("pk").eq(part), ConsistentRead=True)["Items"]
    ]


def members(room: str) -> list[str]:
    return sorted(str(item["sk"]) for item in items(f"room#acme#{room}"))


def online(services: Services) -> set[str]:
    return {user["userId"] for user in services.connections.online_users("acme", None, 1000, 100_000).users}


@pytest.fixture
def services(interleaver: Interleaver, services: Services) -> Services:
    return services


def connect_status(connection_id: str, user: str) -> int:
    response = invoke("handlers.connect.handler", lifecycle_event("connect", connection_id, user, "acme"))
    status: int = response["statusCode"]
    run_deferred()
    return status


# ---- 1. A new connection never loses its own record ----


def test_a_410_during_connect_does_not_unrecord_the_new_connection(
    services: Services, gateway: RecordingGateway, interleaver: Interleaver
) -> None:
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    # API Gateway answers 410 for a connection until its $connect returns.
    gateway.gone.add("ana-1")

    @interleaver.before("UpdateItem", "presence#acme", "ana-1")
    def ben_creates_a_conversation() -> None:
        ben.ok("conversation:create", {"subject": "while ana connects"})  # fans out to the company room

    assert connect_status("ana-1", "ana") == 200
    assert interleaver.fired == ["UpdateItem"]
    assert gateway.events("ben-1", "conversation:updated")  # the broadcast did meet ana's 410
    gateway.gone.discard("ana-1")  # $connect returned: the socket is open

    ana = Peer(gateway, "ana-1", "ana", "acme")
    assert "ana-1" in members("company:acme")
    assert "ana-1" in members("user:ana")
    assert "ana" in online(services)
    conversation = ben.ok("conversation:create", {"subject": "after"})["conversation"]["id"]
    assert [f["data"]["conversation"]["id"] for f in ana.received("conversation:updated")] == [conversation]
    ana.ok("join:conversation", {"conversationId": conversation})
    ben.ok("message:send", {"conversationId": conversation, "content": "hello ana"})
    assert [f["data"]["content"] for f in ana.received("message:new")] == ["hello ana"]


def test_a_410_for_a_settled_connection_forgets_it_after_the_reply(
    services: Services, gateway: RecordingGateway, clock: ManualClock
) -> None:
    watcher = Peer(gateway, "w", "watcher", "acme").connect()
    Peer(gateway, "ghost", "ghost", "acme").connect()
    gateway.gone.add("ghost")
    settle(clock)
    watcher.ok("conversation:create", {})
    assert "ghost" not in members("company:acme")
    assert "ghost" not in online(services)
    assert [f["data"] for f in watcher.received("status:offline")] == [{"userId": "ghost"}]


def test_a_410_met_during_connect_is_no_proof_however_late_its_clean_up_runs(
    services: Services,
    gateway: RecordingGateway,
    deferred: QueuedDeferrer,
    interleaver: Interleaver,
    clock: ManualClock,
) -> None:
    """The grace counts from the 410, not from when the deferred clean-up runs: Lambda may queue an
    asynchronous invocation for minutes, or retry it after a failure."""
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    deferred.auto = False
    gateway.gone.add("ana-1")

    @interleaver.before("UpdateItem", "presence#acme", "ana-1")
    def ben_creates_a_conversation() -> None:
        ben.ok("conversation:create", {})

    invoke("handlers.connect.handler", lifecycle_event("connect", "ana-1", "ana", "acme"))
    assert [task.kind for task in deferred.tasks] == ["gone", "online"]
    clock.advance(120)
    run_deferred()
    assert services.connections.get("ana-1") is not None
    assert "ana-1" in members("company:acme")


# ---- 6. No presence ghosts, whatever order $connect and $disconnect run in ----


def test_a_disconnect_before_connect_leaves_nothing_recorded(services: Services, gateway: RecordingGateway) -> None:
    watcher = Peer(gateway, "w", "watcher", "acme").connect()
    deliver(lifecycle_event("disconnect", "ana-1", "ana", "acme"))

    assert connect_status("ana-1", "ana") == 410
    assert "ana-1" not in members("company:acme") + members("user:ana")
    assert "ana" not in online(services)
    assert services.connections.get("ana-1") is None
    assert watcher.received("status:online") == []


@pytest.mark.parametrize("operation", ["UpdateItem", "GetItem"])
def test_a_disconnect_during_connects_presence_window_leaves_no_ghost(
    services: Services, gateway: RecordingGateway, interleaver: Interleaver, operation: str
) -> None:
    """$disconnect lands just before $connect adds the presence (UpdateItem), or just before its final
    check (GetItem): either way the user is not left online."""
    watcher = Peer(gateway, "w", "watcher", "acme").connect()
    needle = "presence#acme" if operation == "UpdateItem" else "conn#ana-1"

    @interleaver.before(operation, needle, "ana-1")
    def ana_disconnects() -> None:
        deliver(lifecycle_event("disconnect", "ana-1", "ana", "acme"))

    assert connect_status("ana-1", "ana") == 410
    assert interleaver.fired == [operation]
    assert "ana" not in online(services)
    assert "ana-1" not in members("company:acme") + members("user:ana")
    shard = hour_index_shard("ana-1", settings().hour_index_shards)
    assert [
        item for item in items(f"opened#{items('conn#ana-1')[0]['connectedAt'][:13]}#{shard}") if item["sk"] == "ana-1"
    ] == []
    assert watcher.received("status:online") == []
    # The watcher sees ana come and go later, as usual: the set was not left holding the dead id.
    Peer(gateway, "ana-2", "ana", "acme").connect()
    assert [f["data"] for f in watcher.received("status:online")] == [{"userId": "ana"}]
    Peer(gateway, "ana-2", "ana", "acme").disconnect()
    assert watcher.received()[-1] == {
        "event": "status:offline",
        "namespace": "/conversations",
        "data": {"userId": "ana"},
    }


def test_a_disconnect_whose_presence_update_fails_is_finished_by_the_sweep(
    services: Services, gateway: RecordingGateway, interleaver: Interleaver
) -> None:
    watcher = Peer(gateway, "w", "watcher", "acme").connect()
    ana = Peer(gateway, "ana-1", "ana", "acme")
    services.connections.open("ana-1", Identity(userId="ana", companyId="acme"), datetime.now(UTC) - timedelta(hours=4))

    @interleaver.before("UpdateItem", "presence#acme", "ana-1")
    def throttled() -> None:
        raise RuntimeError("throttled, three times over")

    with pytest.raises(RuntimeError):
        ana.disconnect()
    assert "ana" in online(services)  # the ghost, for now
    assert services.presence.sweep(datetime.now(UTC)) == 1
    assert "ana" not in online(services)
    assert [f["data"] for f in watcher.received("status:offline")] == [{"userId": "ana"}]


def test_a_users_first_connection_is_announced_though_it_closed_while_another_opened(
    services: Services, gateway: RecordingGateway, deferred: QueuedDeferrer
) -> None:
    watcher = Peer(gateway, "w", "watcher", "acme").connect()
    deferred.auto = False
    Peer(gateway, "ana-1", "ana", "acme").connect()  # first: its announcement waits in the queue
    Peer(gateway, "ana-2", "ana", "acme").connect()  # not the first: nothing to announce
    Peer(gateway, "ana-1", "ana", "acme").disconnect()  # not the last: nothing to announce
    run_deferred()
    assert [f["data"] for f in watcher.received("status:online")] == [{"userId": "ana"}]


def test_a_disconnect_overtaking_a_join_leaves_no_membership(
    services: Services, gateway: RecordingGateway, interleaver: Interleaver
) -> None:
    ana = Peer(gateway, "ana-1", "ana", "acme").connect()
    conversation = Peer(gateway, "ben-1", "ben", "acme").connect().ok("conversation:create", {})["conversation"]["id"]

    @interleaver.before("TransactWriteItems", "conn#ana-1")
    def ana_disconnects() -> None:
        ana.disconnect()

    assert ana.error("join:conversation", {"conversationId": conversation}) == "conflict"
    assert interleaver.fired == ["TransactWriteItems"]
    assert "ana-1" not in members(f"conversation:{conversation}")


# ---- 3. The work before a reply is bounded by the request's own room ----


def test_a_send_to_a_room_with_30_gone_members_posts_only_to_its_room_before_replying(
    services: Services, gateway: RecordingGateway, deferred: QueuedDeferrer, clock: ManualClock
) -> None:
    deferred.auto = False
    for index in range(300):
        Peer(gateway, f"other-{index}", f"other-{index}", "acme").connect()
    sender = Peer(gateway, "sender", "sender", "acme").connect()
    conversation = sender.ok("conversation:create", {})["conversation"]["id"]
    for index in range(30):
        Peer(gateway, f"gone-{index}", f"gone-{index}", "acme").connect().ok(
            "join:conversation", {"conversationId": conversation}
        )
        gateway.gone.add(f"gone-{index}")
    deferred.take()  # the online announcements of the set-up
    gateway.calls = 0
    settle(clock)

    sender.ok("message:send", {"conversationId": conversation, "content": "anyone?"})

    assert gateway.calls == 31  # the room: the sender and the 30 gone members, nothing more
    assert [task.kind for task in deferred.tasks] == ["gone"]
    # After the reply: each gone user forgotten and announced offline once, to the company of 300.
    run_deferred()
    assert members(f"conversation:{conversation}") == ["sender"]
    offline = [f["data"]["userId"] for f in gateway.events("other-0", "status:offline")]
    assert sorted(offline) == sorted(f"gone-{index}" for index in range(30))


# ---- 9. A connection's rooms are capped ----


@pytest.fixture
def three_rooms_at_most(services: Services, gateway: RecordingGateway) -> Services:
    capped = build_services(
        dataclasses.replace(settings(), max_rooms_per_connection=4),
        gateway=gateway,
        deferrer=services.deferrer,
        clock=services.clock,
    )
    runtime.install(capped)
    return capped


def test_a_connection_joins_at_most_the_configured_number_of_rooms(
    three_rooms_at_most: Services, gateway: RecordingGateway
) -> None:
    ana = Peer(gateway, "ana-1", "ana", "acme").connect()  # company and user rooms: 2 of 4
    conversations = [
        Peer(gateway, f"{user}-1", user, "acme").connect().ok("conversation:create", {})["conversation"]["id"]
        for user in ("ben", "carl", "dan")
    ]
    for conversation in conversations[:2]:
        ana.ok("join:conversation", {"conversationId": conversation})
    assert ana.error("join:conversation", {"conversationId": conversations[2]}) == "conflict"
    assert ana.error("conversation:create", {}) == "conflict"
    assert ana.error("analytics:subscribe") == "conflict"
    ana.ok("join:conversation", {"conversationId": conversations[0]})  # a room it is in: fine
    ana.ok("leave:conversation", {"conversationId": conversations[0]})
    ana.ok("join:conversation", {"conversationId": conversations[2]})
    (record,) = items("conn#ana-1")
    assert len(record["rooms"]) == 4


# ---- 10. No orphans ----


@pytest.mark.parametrize(("action", "room"), [("leave:conversation", "conversation"), ("analytics:unsubscribe", None)])
def test_a_leave_after_disconnect_does_not_recreate_the_connection(
    services: Services, gateway: RecordingGateway, action: str, room: str | None
) -> None:
    ana = Peer(gateway, "ana-1", "ana", "acme").connect()
    conversation = ana.ok("conversation:create", {})["conversation"]["id"]
    ana.ok("analytics:subscribe")
    ana.disconnect()

    data = {"conversationId": conversation} if room else None
    ana.ok(action, data)

    (record,) = items("conn#ana-1")
    assert "closedAt" in record
    assert "ttl" in record
    assert services.connections.get("ana-1") is None
    assert members(f"conversation:{conversation}") == []
    assert members("analytics:acme") == []


def test_a_membership_without_a_record_is_removed_by_the_410_clean_up(
    services: Services, gateway: RecordingGateway
) -> None:
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    conversation = ben.ok("conversation:create", {})["conversation"]["id"]
    boto3.resource("dynamodb").Table("test-connections").put_item(
        Item={"pk": f"room#acme#conversation:{conversation}", "sk": "orphan", "userId": "x", "ttl": 2_000_000_000}
    )
    gateway.gone.add("orphan")
    ben.ok("message:send", {"conversationId": conversation, "content": "one"})
    assert members(f"conversation:{conversation}") == ["ben-1"]
    calls_before = gateway.calls
    ben.ok("message:send", {"conversationId": conversation, "content": "two"})
    assert gateway.calls == calls_before + 1  # the orphan is no longer posted to


def test_a_refresh_after_disconnect_is_refused_without_an_internal_error(
    services: Services, gateway: RecordingGateway
) -> None:
    from tests.conftest import make_token

    ana = Peer(gateway, "ana-1", "ana", "acme").connect()
    ana.disconnect()
    token = make_token({"userId": "ana", "companyId": "acme"})
    assert ana.error("auth:refresh", {"token": token}) == "conflict"


# ---- presence:list fits one reply ----


def test_presence_list_pages_by_size_and_loses_no_one(services: Services, gateway: RecordingGateway) -> None:
    table = boto3.resource("dynamodb").Table("test-connections")
    users = [f"user-{index:04d}-" + "x" * 100 for index in range(3000)]
    with table.batch_writer() as batch:
        for user in users:
            batch.put_item(Item={"pk": "presence#acme", "sk": user, "connections": {f"c-{user[:9]}"}})
    viewer = Peer(gateway, "viewer", "viewer", "acme").connect()

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        reply = viewer.act("presence:list", {"limit": 1000, **({"cursor": cursor} if cursor else {})})
        assert len(encode(reply).encode("utf-8")) <= 128 * 1024  # as the server encodes it
        seen += [user["userId"] for user in reply["data"]["users"]]
        cursor = reply["data"]["nextCursor"]
        pages += 1
        if cursor is None:
            break
    assert pages > 1
    assert sorted(seen) == sorted([*users, "viewer"])
    assert deferrer().tasks == []


class FailingDeferrer(QueuedDeferrer):
    def defer(self, _task: Any) -> None:
        raise RuntimeError("Lambda is unavailable")


@pytest.fixture
def failing_deferrer(services: Services, gateway: RecordingGateway) -> Services:
    broken = build_services(settings(), gateway=gateway, deferrer=FailingDeferrer(), clock=services.clock)
    runtime.install(broken)
    return broken


def test_a_connect_whose_announcement_cannot_be_handed_off_is_refused_whole(
    failing_deferrer: Services, gateway: RecordingGateway
) -> None:
    with pytest.raises(RuntimeError):
        invoke("handlers.connect.handler", lifecycle_event("connect", "ana-1", "ana", "acme"))
    assert failing_deferrer.connections.get("ana-1") is None
    assert "ana" not in online(failing_deferrer)
    assert members("company:acme") == []


def test_a_send_whose_clean_up_cannot_be_handed_off_still_succeeds(
    services: Services, gateway: RecordingGateway, deferred: QueuedDeferrer
) -> None:
    ana = Peer(gateway, "ana-1", "ana", "acme").connect()
    conversation = ana.ok("conversation:create", {})["conversation"]["id"]
    Peer(gateway, "ben-1", "ben", "acme").connect().ok("join:conversation", {"conversationId": conversation})
    gateway.gone.add("ben-1")
    runtime.install(build_services(settings(), gateway=gateway, deferrer=FailingDeferrer(), clock=services.clock))
    sent = ana.ok("message:send", {"conversationId": conversation, "content": "still stored, still acked"})
    assert sent["id"]
