"""A company's presence items in shards by user (decision 0107): each user's item in their shard's partition
(shard 0 the unsharded key), two shards written at once, and the presence list merging the shards in user id
order across pages, within `limit` and `max_bytes`."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Key

from roomcast_local.testing import (
    Peer,
    QueuedDelayer,
    RecordingGateway,
    invoke,
    run_deferred,
    sqs_event,
)
from shared.delivery.delayed import DelayedTask, OfflineDue
from shared.protocol.frames import LIST_ENVELOPE_BYTES, ListRoom
from shared.protocol.identity import Identity
from shared.stores.connections import (
    GRACE_IN_SHARD,
    PRESENCE_SHARDS,
    ConnectionStore,
    Departure,
    presence_partitions,
    presence_pk,
    presence_shard,
)
from shared.wiring.services import Services
from tests.conftest import Interleaver
from tests.test_presence_grace import as_before_the_deploy, presence_item

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
# Users of the tests below and their shards: ana 15, ben 28, max 0, ned 1.
ENTRY_BYTES = len('{"userId":"u-00","connections":1}') + 1


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


# ---- two closes at once across the deploy: one connection in the unsharded key, one in her shard ----

# A needle for the unsharded key alone (`presence#acme#15` also contains `presence#acme`).
UNSHARDED = '"presence#acme"'
ANA_SHARD = "presence#acme#15"


def offline_announced(watcher: Peer) -> list[str]:
    return [frame["data"]["userId"] for frame in watcher.received("status:offline")]


def before_and_after_the_deploy(gateway: RecordingGateway) -> tuple[Peer, Peer, Peer]:
    """Ben watching; ana's laptop (`ana-1`) from before the deploy, listed in the unsharded key, and her phone
    (`ana-2`) from after it, in her shard (15: two items), marked `unshardedOpen`."""
    assert presence_shard("ana") != 0
    assert presence_pk("acme", "ana") == ANA_SHARD
    ben = Peer(gateway, "ben-1", "ben", "acme").connect()
    laptop = Peer(gateway, "ana-1", "ana", "acme").connect()
    as_before_the_deploy("ana", ANA_SHARD)
    phone = Peer(gateway, "ana-2", "ana", "acme").connect()
    assert (presence_item("presence#acme", "ana") or {}).get("connections") == {"ana-1"}
    shard_item = presence_item(ANA_SHARD, "ana") or {}
    assert shard_item.get("connections") == {"ana-2"}
    assert shard_item.get("unshardedOpen") is True
    assert [frame["data"]["userId"] for frame in ben.received("status:online")] == ["ana"]
    return ben, laptop, phone


# Both closes' writes land before either reads the other item: the first close is held between its write
# (removing its connection from its own item) and its read of her other item, and the second runs whole
# meanwhile. Each then reads the other item after the other's write: neither sees a connection left, and only
# one of them may announce.
@pytest.mark.xfail(
    strict=True,
    reason="two ends of a user's last connections across decision 0107's deploy, one in each item, that both write "
    "before either reads the other both announce status:offline (a claim was tried and reviewed unsound; see 0107)",
)
@pytest.mark.parametrize("first_closed", ["laptop", "phone"])
def test_without_a_grace_two_closes_across_the_deploy_at_once_announce_offline_once(
    services: Services, gateway: RecordingGateway, interleaver: Interleaver, first_closed: str
) -> None:
    """PRESENCE_GRACE_SECONDS=0. The laptop's close removes ana-1 from the unsharded key, then reads her shard;
    the phone's removes ana-2 from her shard, then (`unshardedOpen`) reads the unsharded key. The second close runs
    whole between the first's write and its read: exactly one `status:offline`, and she is no longer listed."""
    ben, laptop, phone = before_and_after_the_deploy(gateway)
    first, second, other = (laptop, phone, ANA_SHARD) if first_closed == "laptop" else (phone, laptop, UNSHARDED)

    @interleaver.before("GetItem", other, '"ana"')
    def _the_other_closes() -> None:
        second.disconnect()

    first.disconnect()
    assert interleaver.fired == ["GetItem"]
    assert offline_announced(ben) == ["ana"]
    assert listed(services.connections) == ["ben"]
    assert not services.connections.is_online("acme", "ana")
    # Her next connection is announced, and its close too, once each.
    again = Peer(gateway, "ana-3", "ana", "acme").connect()
    assert [frame["data"]["userId"] for frame in ben.received("status:online")] == ["ana", "ana"]
    again.disconnect()
    assert offline_announced(ben) == ["ana", "ana"]


@pytest.mark.parametrize("first_closed", ["laptop", "phone"])
def test_without_a_grace_a_close_across_the_deploy_just_before_the_others_write_announces_offline_once(
    services: Services, gateway: RecordingGateway, interleaver: Interleaver, first_closed: str
) -> None:
    """PRESENCE_GRACE_SECONDS=0. The second close runs whole just before the first removes its connection from its
    item: the second reads the first's item with the connection still there (nothing to announce), and the first,
    after its write, reads the second's item empty: it announces, once."""
    ben, laptop, phone = before_and_after_the_deploy(gateway)
    first, second, own, connection = (
        (laptop, phone, UNSHARDED, "ana-1") if first_closed == "laptop" else (phone, laptop, ANA_SHARD, "ana-2")
    )

    @interleaver.before("UpdateItem", own, connection, "DELETE connections")
    def _the_other_closes() -> None:
        second.disconnect()
        assert offline_announced(ben) == []

    first.disconnect()
    assert interleaver.fired == ["UpdateItem"]
    assert offline_announced(ben) == ["ana"]
    assert listed(services.connections) == ["ben"]
    assert not services.connections.is_online("acme", "ana")


def end_grace(task: DelayedTask) -> None:
    """The delay queue hands the grace's end to the delayed function, as its own message."""
    result = invoke("handlers.delayed.handler", sqs_event([json.dumps(task.model_dump(by_alias=True, mode="json"))]))
    assert result == {"batchItemFailures": []}
    run_deferred()


def both_graces(delayed: QueuedDelayer, laptop: Peer, phone: Peer) -> tuple[DelayedTask, DelayedTask]:
    """Both of ana's connections close: each begins a grace in its own item (nothing announced yet); returns the
    laptop's grace end (in the unsharded key) and the phone's (in her shard)."""
    laptop.disconnect()
    phone.disconnect()
    (laptops, _), (phones, _) = delayed.take()
    assert isinstance(laptops, OfflineDue)
    assert isinstance(phones, OfflineDue)
    assert not laptops.grace.endswith(GRACE_IN_SHARD)
    assert phones.grace.endswith(GRACE_IN_SHARD)
    return laptops, phones


@pytest.mark.xfail(
    strict=True,
    reason="two ends of a user's last connections across decision 0107's deploy, one in each item, that both write "
    "before either reads the other both announce status:offline (a claim was tried and reviewed unsound; see 0107)",
)
@pytest.mark.parametrize("first_ended", ["laptop", "phone"])
def test_two_grace_ends_across_the_deploy_at_once_announce_offline_once(
    graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer, interleaver: Interleaver, first_ended: str
) -> None:
    """Both connections closed within one grace. The laptop's grace end removes its grace from the unsharded key,
    then reads her shard; the phone's removes its grace from her shard, then (`unshardedOpen`) reads the unsharded
    key. The second end runs whole between the first's write and its read: exactly one `status:offline`."""
    ben, laptop, phone = before_and_after_the_deploy(gateway)
    laptops, phones = both_graces(delayed, laptop, phone)
    assert offline_announced(ben) == []
    first, second, other = (laptops, phones, ANA_SHARD) if first_ended == "laptop" else (phones, laptops, UNSHARDED)

    @interleaver.before("GetItem", other, '"ana"')
    def _the_other_grace_ends() -> None:
        end_grace(second)

    end_grace(first)
    assert interleaver.fired == ["GetItem"]
    assert offline_announced(ben) == ["ana"]
    assert listed(graced.connections) == ["ben"]
    assert not graced.connections.is_online("acme", "ana")


@pytest.mark.parametrize("first_ended", ["laptop", "phone"])
def test_two_grace_ends_across_the_deploy_at_once_after_a_reconnect_announce_nothing(
    graced: Services, gateway: RecordingGateway, delayed: QueuedDelayer, interleaver: Interleaver, first_ended: str
) -> None:
    """Both connections closed, and she came back within the grace (a new connection, in her shard): the two grace
    ends, run as above, announce nothing, and she stays listed. The phone's end, finding the new connection in its
    own item, reads nothing else: the laptop's end runs whole just before the phone's end writes."""
    ben, laptop, phone = before_and_after_the_deploy(gateway)
    laptops, phones = both_graces(delayed, laptop, phone)
    Peer(gateway, "ana-3", "ana", "acme").connect()
    assert [frame["data"]["userId"] for frame in ben.received("status:online")] == ["ana"]  # no second online
    step: tuple[str, ...]
    if first_ended == "laptop":
        first, second, step = laptops, phones, ("GetItem", ANA_SHARD, '"ana"')
    else:
        first, second, step = phones, laptops, ("UpdateItem", ANA_SHARD, '"ana"', "REMOVE offlinePending")

    @interleaver.before(*step)
    def _the_other_grace_ends() -> None:
        end_grace(second)

    end_grace(first)
    assert interleaver.fired == [step[0]]
    assert offline_announced(ben) == []
    assert listed(graced.connections) == ["ana", "ben"]
    assert graced.connections.is_online("acme", "ana")
    assert delayed.take() == []


@pytest.mark.parametrize("last_ended", ["laptop", "phone"])
def test_a_grace_end_across_the_deploy_whose_announcement_failed_announces_on_redelivery(
    graced: Services,
    gateway: RecordingGateway,
    delayed: QueuedDelayer,
    monkeypatch: pytest.MonkeyPatch,
    last_ended: str,
) -> None:
    """The later of the two grace ends finds her other item over, then its announcement fails (the company room's
    query throttled): SQS delivers the message again, and that delivery announces the one `status:offline` owed;
    a third delivery announces nothing more."""
    ben, laptop, phone = before_and_after_the_deploy(gateway)
    laptops, phones = both_graces(delayed, laptop, phone)
    first, last = (phones, laptops) if last_ended == "laptop" else (laptops, phones)
    end_grace(first)  # her other grace still runs: nothing announced
    assert offline_announced(ben) == []
    message = sqs_event([json.dumps(last.model_dump(by_alias=True, mode="json"))])  # the same message each time
    real = graced.rooms.members

    def throttled(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("throttled")

    monkeypatch.setattr(graced.rooms, "members", throttled)
    assert len(invoke("handlers.delayed.handler", message)["batchItemFailures"]) == 1
    monkeypatch.setattr(graced.rooms, "members", real)
    assert offline_announced(ben) == []
    assert invoke("handlers.delayed.handler", message) == {"batchItemFailures": []}
    assert invoke("handlers.delayed.handler", message) == {"batchItemFailures": []}
    assert offline_announced(ben) == ["ana"]
    assert listed(graced.connections) == ["ben"]
