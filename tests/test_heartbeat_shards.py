"""The heartbeat in shards (decision 0093): the scheduled run starts one invocation per shard of the heartbeat
index, each pings the Socket.IO connections of its shard only, and connects and closes that run meanwhile
neither lose a connection its pings nor leave one pinged after its close."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from roomcast_local.testing import (
    QueuedShards,
    RecordingGateway,
    SocketIoPeer,
    invoke,
    load_event,
    run_deferred,
    run_heartbeat,
)
from shared.protocol import socketio
from shared.stores.rooms import hour_index_shard
from shared.wiring.services import Services
from shared.wiring.settings import settings
from tests.conftest import Interleaver
from tests.test_lifecycle import items

PING = socketio.PING


@pytest.fixture
def heartbeat(interleaver: Interleaver, services: Services) -> Services:
    return services


def pings(gateway: RecordingGateway) -> Counter[str]:
    return Counter(connection_id for connection_id, texts in gateway.texts.items() for text in texts if text == PING)


def peers(gateway: RecordingGateway, count: int) -> list[str]:
    ids = [f"sio-{index:02d}" for index in range(count)]
    for connection_id in ids:
        SocketIoPeer(gateway, connection_id, f"u-{connection_id}", "acme").connect()
    run_deferred()  # the open packets: only then is a connection in the heartbeat index
    return ids


def shard_of(connection_id: str) -> int:
    return hour_index_shard(connection_id, settings().hour_index_shards)


def test_the_scheduled_run_starts_every_shard_and_each_pings_only_its_own(
    heartbeat: Services, gateway: RecordingGateway
) -> None:
    ids = peers(gateway, 24)
    assert len({shard_of(connection_id) for connection_id in ids}) > 1
    assert invoke("handlers.heartbeat.handler", load_event("schedule-heartbeat")) == {
        "shards": settings().hour_index_shards
    }
    starter = heartbeat.shard_starter
    assert isinstance(starter, QueuedShards)
    shards = starter.take()
    assert sorted(shard.shard for shard in shards) == list(range(settings().hour_index_shards))
    for shard in shards:
        before = pings(gateway)
        invoke("handlers.heartbeat.handler", shard.model_dump())
        pinged = pings(gateway) - before
        assert set(pinged) == {connection_id for connection_id in ids if shard_of(connection_id) == shard.shard}
    assert pings(gateway) == Counter(dict.fromkeys(ids, 1))


def test_a_shard_it_cannot_read_is_refused_not_pinged(
    heartbeat: Services, gateway: RecordingGateway, caplog: pytest.LogCaptureFixture
) -> None:
    peers(gateway, 3)
    shards = settings().hour_index_shards
    # Out of range too (a payload of a deploy with more shards, or none of ours): refused as cleanly as the rest,
    # not raised (an error of an invocation nobody retries, on the function's Errors alarm).
    refused: list[dict[str, Any]] = [
        {"shard": "seven"},
        {"shard": 3, "more": 1},
        {"shard": -1},
        {"shard": shards},
        {"shard": 10**30},
    ]
    for event in refused:
        assert invoke("handlers.heartbeat.handler", event) == {"pinged": 0}
    assert [record.getMessage() for record in caplog.records] == ["not a heartbeat shard"] * len(refused)
    assert pings(gateway) == Counter()


def test_shards_run_at_once_beside_a_connect_and_a_disconnect(
    heartbeat: Services, gateway: RecordingGateway, interleaver: Interleaver
) -> None:
    ids = peers(gateway, 24)
    leaving = ids[0]
    arriving = "sio-new"
    left_shard, new_shard = shard_of(leaving), shard_of(arriving)
    other = next(shard for shard in range(settings().hour_index_shards) if shard not in {left_shard, new_shard})

    # While shard `left_shard` reads its index, another shard runs whole, one connection closes and one opens.
    @interleaver.before("Query", f"#{left_shard}", "heartbeat#")
    def meanwhile() -> None:
        invoke("handlers.heartbeat.handler", {"shard": other})
        SocketIoPeer(gateway, leaving, f"u-{leaving}", "acme").disconnect()
        SocketIoPeer(gateway, arriving, f"u-{arriving}", "acme").connect()
        run_deferred()

    invoke("handlers.heartbeat.handler", {"shard": left_shard})
    assert interleaver.fired == ["Query"]
    for shard in range(settings().hour_index_shards):
        if shard not in {left_shard, other}:
            invoke("handlers.heartbeat.handler", {"shard": shard})
    staying = [connection_id for connection_id in ids if connection_id != leaving]
    counted = pings(gateway)
    assert {connection_id: counted[connection_id] for connection_id in staying} == dict.fromkeys(staying, 1)
    # The closed one is pinged at most by the read that began before its close, and is out of the index.
    assert counted[leaving] <= 1
    assert all(item["sk"] != leaving for item in items(str(heartbeat_bucket(leaving))))
    # The new one is in its shard's index, pinged by this run or the next.
    gateway.clear()
    assert run_heartbeat() == len(staying) + 1
    assert pings(gateway) == Counter(dict.fromkeys([*staying, arriving], 1))


def heartbeat_bucket(connection_id: str) -> str:
    (record,) = items(f"conn#{connection_id}")
    return str(record["heartbeat"])
