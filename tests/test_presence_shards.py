"""A company's presence items in shards by user (decision 0107): each user's item in their shard's partition
(shard 0 the unsharded key), two shards written at once, and the presence list merging the shards in user id
order across pages, within `limit` and `max_bytes`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Key

from roomcast_local.testing import Peer, RecordingGateway
from shared.protocol.frames import LIST_ENVELOPE_BYTES, ListRoom
from shared.protocol.identity import Identity
from shared.stores.connections import (
    PRESENCE_SHARDS,
    ConnectionStore,
    Departure,
    presence_partitions,
    presence_pk,
    presence_shard,
)
from shared.wiring.services import Services
from tests.test_lifecycle import Interleaver

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
# Users of the tests below and their shards: ana 15, ben 28, max 0, ned 1.
ENTRY_BYTES = len('{"userId":"u-00","connections":1}') + 1


@pytest.fixture
def interleaver(session: boto3.session.Session) -> Interleaver:
    return Interleaver(session)


@pytest.fixture
def services(interleaver: Interleaver, services: Services) -> Services:
    return services


def presence_items(pk: str) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb").Table("test-connections")
    return [dict(item) for item in table.query(KeyConditionExpression=Key("pk").eq(pk))["Items"]]


def listed(store: ConnectionStore, company: str = "acme") -> list[str]:
    return [user["userId"] for user in store.online_users(company, None, 1000, 100_000).users]


def pages(store: ConnectionStore, company: str, limit: int, max_bytes: int) -> list[list[str]]:
    """Every page of the presence list, following nextCursor; each checked to be within limit and max_bytes."""
    found: list[list[str]] = []
    cursor = None
    while True:
        page = store.online_users(company, cursor, limit, max_bytes)
        room = ListRoom(max_bytes)
        assert len(page.users) <= limit
        assert all(room.admits(user) for user in page.users)
        found.append([user["userId"] for user in page.users])
        if page.next_cursor is None:
            return found
        assert page.next_cursor == page.users[-1]["userId"]
        cursor = page.next_cursor
        assert len(found) < 200, "the list does not end"


def identity(user: str, company: str = "acme") -> Identity:
    return Identity(userId=user, companyId=company)


# ---- the layout ----


def test_a_users_shard_is_stable_and_shard_0_is_the_unsharded_key() -> None:
    assert PRESENCE_SHARDS == 32
    assert [presence_shard(user) for user in ("ana", "ben", "max", "ned")] == [15, 28, 0, 1]
    assert presence_pk("acme", "ana") == "presence#acme#15"
    assert presence_pk("acme", "max") == "presence#acme"
    partitions = presence_partitions("acme")
    assert partitions[0] == "presence#acme"
    assert partitions[1:] == [f"presence#acme#{shard}" for shard in range(1, PRESENCE_SHARDS)]


def test_a_users_presence_item_is_written_in_their_shard(services: Services, gateway: RecordingGateway) -> None:
    for user in ("ana", "ben", "max"):
        Peer(gateway, f"{user}-1", user, "acme").connect()
    assert [item["sk"] for item in presence_items("presence#acme#15")] == ["ana"]
    assert [item["sk"] for item in presence_items("presence#acme#28")] == ["ben"]
    assert [item["sk"] for item in presence_items("presence#acme")] == ["max"]
    assert presence_items("presence#acme#15")[0]["connections"] == {"ana-1"}
    # Each connection's record names its user's partition: its close goes there.
    assert presence_items("conn#ana-1")[0]["presence"] == "presence#acme#15"
    assert presence_items("conn#max-1")[0]["presence"] == "presence#acme"
    assert services.connections.is_online("acme", "ana")
    (connections, unlisted) = services.connections.of_user("acme", "ben")
    assert [connection.connection_id for connection in connections] == ["ben-1"]
    assert unlisted == []


# ---- two shards at once ----


def test_two_users_in_two_shards_connecting_and_closing_at_once(
    services: Services, gateway: RecordingGateway, interleaver: Interleaver
) -> None:
    watcher = Peer(gateway, "w-1", "max", "acme").connect()

    # Ben's whole $connect runs just before ana's writes her shard's item: each in its own partition.
    @interleaver.before("UpdateItem", "presence#acme#15", "ana-1")
    def _ben_connects() -> None:
        Peer(gateway, "ben-1", "ben", "acme").connect()

    ana = Peer(gateway, "ana-1", "ana", "acme").connect()
    assert interleaver.fired == ["UpdateItem"]
    online = sorted(frame["data"]["userId"] for frame in watcher.received("status:online"))
    assert online == ["ana", "ben"]
    assert listed(services.connections) == ["ana", "ben", "max"]

    # And ben's $disconnect just before ana's removes her connection from her shard's item.
    @interleaver.before("UpdateItem", "presence#acme#15", "ana-1", "DELETE connections")
    def _ben_closes() -> None:
        Peer(gateway, "ben-1", "ben", "acme").disconnect()

    ana.disconnect()
    assert interleaver.fired == ["UpdateItem", "UpdateItem"]
    offline = sorted(frame["data"]["userId"] for frame in watcher.received("status:offline"))
    assert offline == ["ana", "ben"]
    assert listed(services.connections) == ["max"]


def test_many_users_of_one_company_opening_and_closing_in_threads(services: Services) -> None:
    store = services.connections
    users = [f"u-{index:02d}" for index in range(40)]
    assert len({presence_shard(user) for user in users}) > 16  # spread over most shards
    with ThreadPoolExecutor(max_workers=4) as pool:
        firsts = list(pool.map(lambda user: store.open(f"{user}-a", identity(user), NOW), users))
        seconds = list(pool.map(lambda user: store.open(f"{user}-b", identity(user), NOW), users))
    assert all(firsts)
    assert not any(seconds)
    assert listed(store) == users
    assert {user["connections"] for user in store.online_users("acme", None, 1000, 100_000).users} == {2}
    with ThreadPoolExecutor(max_workers=4) as pool:
        closes = list(pool.map(lambda user: store.close(f"{user}-a", NOW, departure=Departure.NOW), users))
        lasts = list(pool.map(lambda user: store.close(f"{user}-b", NOW, departure=Departure.NOW), users))
    assert not any(closed is not None and closed.went_offline for closed in closes)
    assert all(closed is not None and closed.went_offline for closed in lasts)
    assert listed(store) == []


# ---- the list over the shards ----


@pytest.mark.parametrize(("limit", "entries"), [(1, 50), (3, 50), (7, 2), (1000, 5), (2, 1)])
def test_the_list_pages_across_the_shards_in_order_without_repeats_or_gaps(
    services: Services, limit: int, entries: int
) -> None:
    store = services.connections
    users = [f"u-{index:02d}" for index in range(45)]
    for user in users:
        store.open(f"{user}-c", identity(user), NOW)
        store.open(f"{user}-g", identity(user, "globex"), NOW)  # the same user ids in another company
    # Some have gone (their items stay, with no connection) and one has come back: the list skips the absent.
    gone = {"u-00", "u-13", "u-27", "u-44"}
    for user in gone | {"u-30"}:
        store.close(f"{user}-c", NOW, departure=Departure.NOW)
    store.open("u-30-d", identity("u-30"), NOW)
    max_bytes = LIST_ENVELOPE_BYTES + entries * ENTRY_BYTES

    found = pages(store, "acme", limit, max_bytes)

    flat = [user for page in found for user in page]
    assert flat == sorted(set(users) - gone)
    assert all(page for page in found[:-1])
    assert max(len(page) for page in found) == min(limit, entries)


def test_the_list_never_shows_another_companys_users(services: Services) -> None:
    store = services.connections
    for index in range(20):
        store.open(f"g-{index}", identity(f"g-{index:02d}", "globex"), NOW)
    store.open("a-1", identity("ana"), NOW)
    assert listed(store, "acme") == ["ana"]
    assert [user for page in pages(store, "globex", 3, 100_000) for user in page] == [
        f"g-{index:02d}" for index in range(20)
    ]
    assert listed(store, "initech") == []


def test_a_page_reads_each_shard_from_after_the_cursor_with_a_bounded_page(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = services.connections
    users = [f"u-{index:02d}" for index in range(60)]
    for user in users:
        store.open(f"{user}-c", identity(user), NOW)
    queries: list[dict[str, Any]] = []
    table = store._table  # the queries a page makes are what is tested
    real = table.query

    def query(**params: Any) -> dict[str, Any]:
        queries.append(params)
        return real(**params)

    monkeypatch.setattr(table, "query", query)
    page = store.online_users("acme", "u-29", 4, 100_000)
    assert [user["userId"] for user in page.users] == ["u-30", "u-31", "u-32", "u-33"]
    assert page.next_cursor == "u-33"
    firsts = [params for params in queries if "ExclusiveStartKey" not in params]
    assert len(firsts) == PRESENCE_SHARDS
    assert {params["Limit"] for params in firsts} == {2}  # twice a page of 4 and one, over 32 shards, and one


# ---- review: without a grace, across the deploy ----


@pytest.mark.parametrize("first_closed", ["before", "after"])
def test_without_a_grace_a_close_beside_a_connection_in_the_other_item_announces_nothing(
    services: Services, gateway: RecordingGateway, first_closed: str
) -> None:
    """PRESENCE_GRACE_SECONDS=0: a close removes the user at once. Ana's laptop connected before the deploy (her
    item in the unsharded key), her phone after it (in her shard): whichever closes first leaves her online through
    the other, and the other's close announces her offline, once."""
    from tests.test_presence_grace import as_before_the_deploy

    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    laptop = Peer(gateway, "ana-1", "ana", "acme").connect()
    as_before_the_deploy("ana", "presence#acme#15")
    phone = Peer(gateway, "ana-2", "ana", "acme").connect()
    assert [frame["data"]["userId"] for frame in ben.received("status:online")] == ["ana"]
    first, second = (laptop, phone) if first_closed == "before" else (phone, laptop)
    first.disconnect()
    assert ben.received("status:offline") == []
    assert services.connections.is_online("acme", "ana")
    second.disconnect()
    assert [frame["data"]["userId"] for frame in ben.received("status:offline")] == ["ana"]
    assert listed(services.connections) == ["ben"]


def test_a_sweep_retried_for_a_connection_from_before_the_deploy_schedules_its_grace_again(
    services: Services,
) -> None:
    """Review: a connection from before the deploy whose record expired is swept from the unsharded key (her shard
    has no item: the sweep tries it first, then the unsharded key). Its grace began there and its schedule may be
    what failed: the retried sweep sees the grace in the unsharded item and schedules it again."""
    from shared.stores.connections import Opened

    store = services.connections
    table = boto3.resource("dynamodb").Table("test-connections")
    table.put_item(Item={"pk": "presence#acme", "sk": "ana", "offlinePending": "g1"})  # the first sweep's grace
    closed = store.close("ana-1", NOW, Opened("ana-1", identity("ana"), "opened#2026-12-02T07#3"))
    assert closed is not None
    assert closed.went_offline
    assert closed.offline_pending == "g1"


def test_a_kick_removes_a_connection_listed_only_in_the_unsharded_key_beside_an_item_in_her_shard(
    services: Services,
) -> None:
    """Review: a connection from before the deploy, its record gone, is listed in the unsharded key while her shard
    has an item of its own (from a later connection, closed since): the kick's close (and the sweep's) removes it
    there, rather than stopping at her shard's item and leaving her listed, and online, until the item's ttl."""
    from shared.stores.connections import Opened

    store = services.connections
    table = boto3.resource("dynamodb").Table("test-connections")
    table.put_item(Item={"pk": "presence#acme", "sk": "ana", "connections": {"ana-1"}})
    table.put_item(Item={"pk": "presence#acme#15", "sk": "ana", "offlineEnded": "old/x"})
    assert store.of_user("acme", "ana") == ([], ["ana-1"])
    closed = store.close("ana-1", NOW, Opened("ana-1", identity("ana"), ""), departure=Departure.NOW)
    assert closed is not None
    assert closed.went_offline
    assert not (presence_items("presence#acme")[0].get("connections"))
    assert listed(store) == []
    assert not store.is_online("acme", "ana")
