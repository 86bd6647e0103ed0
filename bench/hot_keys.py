"""Hot keys (issue 23, item 3): DynamoDB read and write units per partition key per second of simulated time,
counted while the real handlers run against moto, in three scenarios at scaled sizes, extrapolated to full size.

- `tenants`: 1,000 companies of 50 agents, 200 sends per agent-day, every connection reopened every 2 hours.
  Two companies (10 agents connected each) stand in for the platform for one simulated second: the platform's
  events (about 116 sends and 7 reconnects) all fall on them, so a key no company names (an hour index) sees
  the platform's rate as measured, and a key a company, conversation or connection names sees it 500 times
  too often (it is divided by that).
- `storm`: one company's agents all drop at once and reconnect spread over the next 60 s (their graces, 30 s,
  end at once for those not back by then); run at n = 12, 24, 48 agents, each key's busiest second fitted as
  a * n + b * n^2 and extrapolated to 10,000 agents. At these sizes the company room stays under the large-room
  threshold, so its members are read inline, the whole room per broadcast, as the split reads it at full
  size (the split's first page, about 1 unit a partition, is left out). Chunk workers' posts are not run:
  their `postbudget#{second}` claims are the chunk queue's to replace (engineer "isolation").
- `messages`: 1,000 messages a second platform-wide, placed in one company (its worst place: every one
  counted on that company's analytics, journalled in its journal), across 20 conversations, a dashboard
  watching: measured over 60 sends 1 ms apart, as a rate a second.

Units as DynamoDB charges them: a write 1 unit a KB (2 in a transaction), a failed conditional write too; a
read 1 unit per 4 KB consistent, half eventually consistent; a Query's items sized as stored (its projection
does not lower the charge; a projected item is counted as what it returned plus its key and 40 bytes).
"Before" is the same code with one shard of everything (counters, hour indexes, company room memberships).
Presence (`presence#{company}`) and the journal are modelled as they are on this branch; engineers
"presence" (digests) and "seq" redesign them.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.calls import bench_world
from roomcast_local.testing import DEFERRED_HANDLER, DELAYED_HANDLER, Peer, invoke, sqs_event
from shared.delivery.deferred import BroadcastChunk
from shared.stores import analytics as analytics_store
from shared.stores import connections as connections_store
from shared.stores import rooms as rooms_store
from shared.wiring import services as runtime

FULL_STORM = 10_000
STORM_SIZES = (12, 24, 48)
STORM_SECONDS = 60
TENANTS = 1_000
AGENTS = 50
SENDS_PER_AGENT_DAY = 200
CONNECTION_LIFE_S = 7_200
TENANT_WINDOW_S = 1
# Of each stand-in company's 50 agents, those connected: the others change no key this scenario reads.
CONNECTED = 10
MESSAGES_PER_S = 1_000
MESSAGE_SENDS = 60
WRITE_LIMIT = 1_000
READ_LIMIT = 3_000
# Projected attributes a Query leaves out of its answer but charges for (userId, ttl), and DynamoDB's per-item
# overhead.
UNPROJECTED_BYTES = 40
# Keys whose design another engineer of issue 23 is changing: reported, and apart.
REDESIGNED = {"presence#{id}": "presence (digests)", "journal#{id}": "seq (journal allocation)"}
_CLOCKED = (
    "shared.wiring.namespace",
    "handlers.connect",
    "handlers.disconnect",
    "handlers.deferred",
    "handlers.backend_events",
    "shared.delivery.hub",
    "shared.stores.connections",
)
START = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def pattern(pk: str) -> str:
    """A key with its ids named: `room#{id}#company:{id}#{shard}`, `opened#{hour}#{shard}`, `subscribed`."""
    head, *parts = pk.split("#")
    named = []
    for part in parts:
        if part.isdigit() and len(part) <= 3:
            named.append("{shard}")
        elif re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d", part):
            named.append("{hour}")
        elif ":" in part:
            named.append(part.split(":", 1)[0] + ":{id}")
        else:
            named.append("{id}")
    return "#".join([head, *named])


def _size(item: dict[str, Any]) -> int:
    """An item's stored size as DynamoDB counts it, near enough: names plus values."""
    return sum(len(name) + len(json.dumps(value)) - 6 for name, value in item.items())


@dataclass
class KeyLoad:
    """Read and write units by partition key and simulated second, from botocore's events on one session."""

    exact: bool = False
    """Query units as bytes / 4 KB, not rounded up per call: at scaled sizes the rounding, not the room, would
    decide them (a shard of a 10,000-agent company room is about 70 KB, where rounding no longer counts)."""
    second: int | None = None
    member_items: int = 0
    member_bytes: int = 0
    reads: defaultdict[int, defaultdict[str, float]] = field(default_factory=lambda: defaultdict(_units))
    writes: defaultdict[int, defaultdict[str, float]] = field(default_factory=lambda: defaultdict(_units))

    def hook(self, session: Any) -> None:
        session.events.register("before-parameter-build.dynamodb", self._before)
        session.events.register("after-call.dynamodb", self._after)

    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        if self.second is None:
            return
        name = model.name
        reads, writes = self.reads[self.second], self.writes[self.second]
        if name == "GetItem":
            reads[_pk(params["Key"])] += 1 if params.get("ConsistentRead") else 0.5
        elif name in ("PutItem", "UpdateItem", "DeleteItem"):
            key = params["Item"] if name == "PutItem" else params["Key"]
            writes[_pk(key)] += math.ceil(_size(params.get("Item", {})) / 1024) or 1
        elif name == "BatchWriteItem":
            for requests in params["RequestItems"].values():
                for request in requests:
                    key = request["PutRequest"]["Item"] if "PutRequest" in request else request["DeleteRequest"]["Key"]
                    writes[_pk(key)] += 1
        elif name == "BatchGetItem":
            for table in params["RequestItems"].values():
                for key in table["Keys"]:
                    reads[_pk(key)] += 1 if table.get("ConsistentRead") else 0.5
        elif name == "TransactWriteItems":
            for item in params["TransactItems"]:
                ((kind, action),) = item.items()
                key = action.get("Item") or action["Key"]
                (reads if kind == "ConditionCheck" else writes)[_pk(key)] += 2
        elif name == "Query":
            context["hot_keys"] = (self.second, params)

    def _after(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        if model.name != "Query" or "hot_keys" not in context:
            return
        second, params = context.pop("hot_keys")
        values = params.get("ExpressionAttributeValues", {})
        pk = str((values.get(":v0") or values.get(":pk") or {"S": "?"})["S"])
        items = parsed.get("Items", [])
        extra = (len("pk") + len(pk) + UNPROJECTED_BYTES) if "ProjectionExpression" in params else 0
        size = sum(_size({n: _plain(v) for n, v in item.items()}) + extra for item in items)
        units = size / 4096 if self.exact else max(1, math.ceil(size / 4096))
        if "#company:" in pk:
            self.member_items += len(items)
            self.member_bytes += size
        self.reads[second][pk] += units if params.get("ConsistentRead") else units / 2

    def spread(self) -> dict[str, dict[str, float]]:
        """For reads and writes: by sharded key pattern, the busiest second's units summed over the shards of
        one key (a company room's, an hour's), to be shared out as the shard function shares it at full size."""
        found: dict[str, dict[str, float]] = {"reads": {}, "writes": {}}
        for kind, table in (("reads", self.reads), ("writes", self.writes)):
            for counts in table.values():
                totals: defaultdict[str, float] = defaultdict(float)
                for pk, units in counts.items():
                    if pattern(pk).endswith("#{shard}"):
                        totals[pk.rsplit("#", 1)[0]] += units
                for key, units in totals.items():
                    name = pattern(key) + "#{shard}"
                    found[kind][name] = max(found[kind].get(name, 0.0), units)
        return found

    def busiest(self) -> dict[str, dict[str, tuple[float, str]]]:
        """For reads and writes: by key pattern, the busiest key's busiest second (units, key)."""
        found: dict[str, dict[str, tuple[float, str]]] = {"reads": {}, "writes": {}}
        for kind, table in (("reads", self.reads), ("writes", self.writes)):
            for counts in table.values():
                for pk, units in counts.items():
                    name = pattern(pk)
                    if units > found[kind].get(name, (0.0, ""))[0]:
                        found[kind][name] = (units, pk)
        return found


def _units() -> defaultdict[str, float]:
    return defaultdict(float)


def _plain(value: dict[str, Any]) -> Any:
    ((kind, inner),) = value.items()
    return inner if kind in ("S", "N") else str(inner)


def _pk(key: dict[str, Any]) -> str:
    value = key["pk"]
    return str(value["S"] if isinstance(value, dict) else value)


class SimClock:
    def __init__(self) -> None:
        self.now = START

    def at(self, seconds: float) -> None:
        self.now = START + timedelta(seconds=seconds)


@contextmanager
def simulated(clock: SimClock) -> Iterator[None]:
    """The handlers' `utc_now` is the simulated clock's."""
    import importlib

    modules = [importlib.import_module(name) for name in _CLOCKED]
    saved = [module.utc_now for module in modules]
    for module in modules:
        module.utc_now = lambda: clock.now  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module, original in zip(modules, saved, strict=True):
            module.utc_now = original  # type: ignore[attr-defined]


@contextmanager
def shards(count: int | None) -> Iterator[None]:
    """Every shard count at `count` (one: the key layout before sharding); None leaves them as built."""
    saved = (analytics_store.ANALYTICS_SHARDS, rooms_store.COMPANY_ROOM_SHARDS)
    if count is not None:
        analytics_store.ANALYTICS_SHARDS = count
        rooms_store.COMPANY_ROOM_SHARDS = count
        os.environ["HOUR_INDEX_SHARDS"] = str(count)
    try:
        yield
    finally:
        analytics_store.ANALYTICS_SHARDS, rooms_store.COMPANY_ROOM_SHARDS = saved
        os.environ.pop("HOUR_INDEX_SHARDS", None)


def _drain(load: KeyLoad) -> int:
    """Run what was handed off, as the deferred function would; chunk workers' posts are counted, not run."""
    chunks = 0
    while tasks := runtime.services().deferrer.take():  # type: ignore[attr-defined]
        for task in tasks:
            if isinstance(task, BroadcastChunk):
                chunks += 1
            else:
                invoke(DEFERRED_HANDLER, task.model_dump(by_alias=True, mode="json"))
    del load
    return chunks


def _grace_ends() -> None:
    taken = runtime.services().delayer.take()  # type: ignore[attr-defined]
    if taken:
        bodies = [json.dumps(task.model_dump(by_alias=True, mode="json")) for task, _ in taken]
        invoke(DELAYED_HANDLER, sqs_event(bodies))


def storm(agents: int, shard_count: int | None, load: KeyLoad) -> None:
    clock = SimClock()
    with shards(shard_count), bench_world(hook=load.hook) as (_, gateway), simulated(clock):
        peers = [Peer(gateway, f"c-{index}", f"u-{index}", "big") for index in range(agents)]
        for peer in peers:
            peer.connect()
            _drain(load)
        load.second = 0
        for peer in peers:
            peer.disconnect()
            _drain(load)
        for index, peer in enumerate(peers):
            at = STORM_SECONDS * index / agents
            if at >= 30 > STORM_SECONDS * (index - 1) / agents:
                clock.at(30)
                load.second = 30
                _grace_ends()
                _drain(load)
            clock.at(at)
            load.second = int(at)
            Peer(gateway, f"r-{index}", peer.user_id, "big").connect()
            _drain(load)


def messages(shard_count: int | None) -> dict[str, dict[str, tuple[float, str]]]:
    load = KeyLoad()
    clock = SimClock()
    with shards(shard_count), bench_world(hook=load.hook) as (_, gateway), simulated(clock):
        viewer = Peer(gateway, "viewer", "boss", "busy").connect()
        viewer.ok("analytics:subscribe")
        agents = [Peer(gateway, f"a-{index}", f"u-{index}", "busy").connect() for index in range(20)]
        conversations = [agent.ok("conversation:create", {})["conversation"]["id"] for agent in agents]
        _drain(load)
        for index in range(MESSAGE_SENDS):
            clock.at(index / MESSAGES_PER_S)
            load.second = 0
            agent = agents[index % len(agents)]
            agent.ok("message:send", {"conversationId": conversations[index % len(agents)], "content": "hi"})
            _drain(load)
    rate = MESSAGES_PER_S / MESSAGE_SENDS
    found = load.busiest()
    return {kind: {name: (units * rate, pk) for name, (units, pk) in keys.items()} for kind, keys in found.items()}


def tenants(shard_count: int | None) -> dict[str, dict[str, tuple[float, str]]]:
    load = KeyLoad()
    clock = SimClock()
    companies = ("t-0", "t-1")
    sends_per_s = TENANTS * AGENTS * SENDS_PER_AGENT_DAY / 86_400
    reconnects_per_s = TENANTS * AGENTS / CONNECTION_LIFE_S
    events = sorted(
        [(index / sends_per_s, "send") for index in range(int(sends_per_s * TENANT_WINDOW_S))]
        + [(index / reconnects_per_s, "reconnect") for index in range(int(reconnects_per_s * TENANT_WINDOW_S))]
    )
    with shards(shard_count), bench_world(hook=load.hook) as (_, gateway), simulated(clock):
        peers = {
            company: [Peer(gateway, f"{company}-{n}", f"u-{n}", company).connect() for n in range(CONNECTED)]
            for company in companies
        }
        conversations = {
            company: peers[company][0].ok("conversation:create", {})["conversation"]["id"] for company in companies
        }
        _drain(load)
        for index, (at, kind) in enumerate(events):
            clock.at(at)
            load.second = int(at)
            company = companies[index % 2]
            peer = peers[company][index % CONNECTED]
            if kind == "send":
                peer.ok("message:send", {"conversationId": conversations[company], "content": "hi"})
            else:
                peer.disconnect()
                again = Peer(gateway, f"{peer.connection_id}+", peer.user_id, company)
                peers[company][index % CONNECTED] = again.connect()
            _drain(load)
    tenant_share = len(companies) / TENANTS
    return {
        kind: {name: (units * (tenant_share if "{id}" in name else 1.0), pk) for name, (units, pk) in found.items()}
        for kind, found in load.busiest().items()
    }


def _fit(sizes: tuple[int, ...], values: list[float], full: int) -> float:
    """`a * n + b * n^2` through the points (least squares, neither term negative), at `full`: a storm's
    events grow with n, and each broadcast among them reads a room that grows with n too."""
    moments = [[sum(n ** (i + j + 2) for n in sizes) for j in range(2)] for i in range(2)]
    targets = [sum(v * n ** (i + 1) for n, v in zip(sizes, values, strict=True)) for i in range(2)]
    det = moments[0][0] * moments[1][1] - moments[0][1] * moments[1][0]
    linear = (targets[0] * moments[1][1] - targets[1] * moments[0][1]) / det
    square = (targets[1] * moments[0][0] - targets[0] * moments[1][0]) / det
    if square < 0:
        linear, square = targets[0] / moments[0][0], 0.0
    elif linear < 0:
        linear, square = 0.0, targets[1] / moments[1][1]
    return float(linear * full + square * full**2)


def _storm_full(shard_count: int | None) -> dict[str, dict[str, tuple[float, str]]]:
    loads = [KeyLoad(exact=True) for _ in STORM_SIZES]
    for agents, load in zip(STORM_SIZES, loads, strict=True):
        storm(agents, shard_count, load)
    runs = [load.busiest() for load in loads]
    spreads = [load.spread() for load in loads]
    last = loads[-1]
    # What one broadcast to the full company room reads from its busiest partition: the split's whole read.
    member_bytes = last.member_bytes / max(1, last.member_items)
    per_partition = FULL_STORM / (shard_count or rooms_store.COMPANY_ROOM_SHARDS)
    ROOM_READS[shard_count or rooms_store.COMPANY_ROOM_SHARDS] = math.ceil(per_partition * member_bytes / 4096)
    fitted: dict[str, dict[str, tuple[float, str]]] = {}
    for kind in ("reads", "writes"):
        fitted[kind] = {}
        for name in set().union(*(run[kind] for run in runs)):
            values = [run[kind].get(name, (0.0, ""))[0] for run in runs]
            fitted[kind][name] = (_fit(STORM_SIZES, values, FULL_STORM), runs[-1][kind].get(name, (0.0, ""))[1])
        # A sharded key: at n = 48 its busiest shard is mostly chance; at 10,000 the shard function's own share.
        for name in set().union(*(spread[kind] for spread in spreads)):
            total = _fit(STORM_SIZES, [spread[kind].get(name, 0.0) for spread in spreads], FULL_STORM)
            count = _shards_of(name, shard_count)
            fitted[kind][name] = (total * _busiest_share(count), fitted[kind].get(name, (0.0, ""))[1])
    return fitted


def _shards_of(name: str, shard_count: int | None) -> int:
    if shard_count is not None:
        return shard_count
    return rooms_store.COMPANY_ROOM_SHARDS if name.startswith("room#") else connections_store.HOUR_INDEX_SHARDS


def _busiest_share(shards: int) -> float:
    """The busiest shard's share of 10,000 connections' ids (the storm's naming), by the shard function itself."""
    counts = Counter(rooms_store.hour_index_shard(f"r-{index}", shards) for index in range(FULL_STORM))
    return max(counts.values()) / FULL_STORM


# Read units one broadcast to the 10,000-agent company room takes from each of its partitions, by partition count.
ROOM_READS: dict[int, int] = {}

SCENARIOS: dict[str, tuple[str, bool, Callable[[int | None], dict[str, dict[str, tuple[float, str]]]]]] = {
    "tenants": ("1,000 companies x 50 agents, 200 sends per agent-day", False, tenants),
    "storm": ("10,000 agents of one company drop and reconnect over 60 s", True, _storm_full),
    "messages": ("1,000 messages/s platform-wide, all in one watched company", False, messages),
}


def _top(found: dict[str, tuple[float, str]], count: int = 4) -> list[dict[str, Any]]:
    ranked = sorted(found.items(), key=lambda entry: -entry[1][0])[:count]
    return [{"key": name, "per_s": round(units, 1), "redesign": REDESIGNED.get(name)} for name, (units, _) in ranked]


def run() -> dict[str, Any]:
    started = time.perf_counter()
    figures: dict[str, Any] = {}
    busiest: dict[str, dict[str, dict[str, Any]]] = {"reads": {}, "writes": {}}
    for scenario, (title, extrapolated, measure) in SCENARIOS.items():
        for variant, shard_count in (("before", 1), ("after", None)):
            found = measure(shard_count)
            for kind in ("reads", "writes"):
                top = _top(found[kind])
                entry_of = figures.setdefault(scenario, {"scenario": title, "extrapolated": extrapolated})
                entry_of[f"{kind}_{variant}"] = top
                for entry in top:
                    best = busiest[kind].get(variant)
                    if best is None or entry["per_s"] > best["per_s"]:
                        busiest[kind][variant] = {**entry, "scenario": scenario, "extrapolated": extrapolated}
                    mine = f"{variant}_outside_redesigns"
                    best = busiest[kind].get(mine)
                    if entry["redesign"] is None and (best is None or entry["per_s"] > best["per_s"]):
                        busiest[kind][mine] = {**entry, "scenario": scenario, "extrapolated": extrapolated}
    seconds = round(time.perf_counter() - started, 1)
    capacity = {
        f"max_key_{kind}_per_s": {
            "value": busiest[kind]["after"]["per_s"],
            "target": limit,
            "busiest": busiest[kind]["after"],
            "before": busiest[kind]["before"],
            "outside_redesigns": busiest[kind]["after_outside_redesigns"],
            "outside_redesigns_before": busiest[kind]["before_outside_redesigns"],
            "measured": "units per key per simulated second, real handlers against moto",
        }
        for kind, limit in (("writes", WRITE_LIMIT), ("reads", READ_LIMIT))
    }
    room = {str(count): units for count, units in sorted(ROOM_READS.items())}
    capacity["hot_keys"] = {
        "scenarios": figures,
        # A broadcast's split reads each partition of the company room once: the company-room broadcasts a second
        # its busiest partition stands is READ_LIMIT over this (presence decides how many there are).
        "company_room_read_units_per_partition_per_broadcast_10000": room,
        "bench_s": seconds,
    }
    print(f"  hot keys: {json.dumps({k: v['value'] for k, v in capacity.items() if 'value' in v})} in {seconds} s")
    return capacity
