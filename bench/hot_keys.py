"""Hot keys (issue 23, item 3): DynamoDB read and write units per partition key per second of simulated time,
counted while the real handlers run against moto, in three scenarios at scaled sizes, extrapolated to full size.

- `tenants`: 1,000 companies of 50 agents, 200 sends per agent-day, every connection reopened every 2 hours.
  Two companies (10 agents connected each) stand in for the platform for one simulated second: the platform's
  events (about 116 sends and 7 reconnects) all fall on them, so a key no company names (an hour index) sees
  the platform's rate as measured, and a key a company, conversation or connection names sees it 500 times
  too often (it is divided by that).
- `storm`: one company's agents all drop at once and reconnect spread over the next 60 s (their graces, 30 s,
  end at once for those not back by then); run at n = 12, 24, 48 agents, with the presence digest threshold
  and the digests' post rate scaled with n (the company coalesces its presence as the full one does), each
  key's busiest second fitted and extrapolated to 10,000 agents: reads as a * n + b * n^2 (a broadcast reads a
  room that grows with n), writes as a * n (each is one event's, of an item that does not grow). A sharded key's
  total over its shards is fitted, then shared out as the shard function shares 10,000 ids. At these sizes the
  company room stays under the large-room threshold, so its members are read inline, the whole room per
  broadcast, as the split reads it at full size (the split's first page, about 1 unit a partition, is left out).
  Chunk workers' posts are not run: their budget claims are the broadcast queue's.
- `messages`: 1,000 messages a second platform-wide, placed in one company (its worst place: every one
  counted on that company's analytics, journalled in its journal), across 20 conversations, a dashboard
  watching: measured over 60 sends 1 ms apart, and the trailing push they lead to, as a rate a second.

Units are counted by `bench.capacity.PartitionCounter`, as DynamoDB charges them (its docstring), on simulated
seconds; the storm's Queries unrounded (at n = 48 the 4 KB rounding, not the room, would decide them). Work
handed off runs when the scenario reaches its moment: the delay queue's at its delay, a trailing push at its due.
"Before" is the same code with one shard of everything (counters, hour indexes, company room memberships,
presence digests, presence items). The company journal (`journal#{company}`) is engineer "seqfix"'s: reported,
and flagged.
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

import boto3

from bench.calls import TABLES, bench_world
from bench.capacity import READ_UNIT_BYTES, Kind, PartitionCounter, item_size
from roomcast_local.template import load_template
from roomcast_local.testing import DEFERRED_HANDLER, DELAYED_HANDLER, Peer, invoke, sqs_event
from shared.delivery.deferred import BroadcastChunk, MetricsDue
from shared.protocol.rooms import company_room
from shared.stores import analytics as analytics_store
from shared.stores import connections as connections_store
from shared.stores import presence_digest as digest_store
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
# Simulated seconds before the scenario's start for its set-up, and after its end for what it left due: longer
# than the delay queue's longest delay (a digest's interval is at most 900 s).
SET_UP_S = 1_000
# Keys whose design another engineer of issue 23 is changing: reported, and apart.
REDESIGNED = {"journal#{id}": "seqfix: journal allocation"}
START = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
# The deploy's digest threshold and digest post rate (template parameters), scaled with the storm's company.
DIGEST_THRESHOLD = int(load_template()["Parameters"]["PresenceDigestThreshold"]["Default"])
DIGEST_POSTS_PER_S = int(load_template()["Parameters"]["PresencePostsPerSecond"]["Default"])


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


def _keys(counter: PartitionCounter, kind: Kind) -> dict[int, dict[str, float]]:
    """The counter's units of `kind` by simulated second, by partition key (the table's name left out)."""
    return {
        second: {key.split("/", 1)[1]: units for key, units in keys.items()}
        for second, keys in counter.by_second(kind).items()
    }


def busiest(counter: PartitionCounter, one_second: bool = False) -> dict[str, dict[str, tuple[float, str]]]:
    """For reads and writes: by key pattern, the busiest key's busiest second (units, key). `one_second`: every
    second's units as one's (a sample standing for a second)."""
    found: dict[str, dict[str, tuple[float, str]]] = {"reads": {}, "writes": {}}
    for kind, unit in (("reads", "read"), ("writes", "write")):
        seconds = list(_keys(counter, unit).values())  # type: ignore[arg-type]
        if one_second:
            merged: defaultdict[str, float] = defaultdict(float)
            for counts in seconds:
                for pk, units in counts.items():
                    merged[pk] += units
            seconds = [dict(merged)]
        for counts in seconds:
            for pk, units in counts.items():
                name = pattern(pk)
                if units > found[kind].get(name, (0.0, ""))[0]:
                    found[kind][name] = (units, pk)
    return found


def spread(counter: PartitionCounter) -> dict[str, dict[str, float]]:
    """For reads and writes: by sharded key pattern, the busiest second's units summed over the shards of one
    key (a company room's, an hour's, a digest's), to be shared out as the shard function shares it at full size.
    A shard 0 that is the unsharded key (a digest's) is in the sum."""
    found: dict[str, dict[str, float]] = {"reads": {}, "writes": {}}
    for kind, unit in (("reads", "read"), ("writes", "write")):
        for counts in _keys(counter, unit).values():  # type: ignore[arg-type]
            totals: defaultdict[str, float] = defaultdict(float)
            for pk, units in counts.items():
                if pattern(pk).endswith("#{shard}"):
                    totals[pk.rsplit("#", 1)[0]] += units
            for key in list(totals):
                totals[key] += counts.get(key, 0.0)
            for key, units in totals.items():
                name = pattern(key) + "#{shard}"
                found[kind][name] = max(found[kind].get(name, 0.0), units)
    return found


class SimClock:
    """The services' clock (decision 0086), and the counter's: the scenario's instant, set by the scenario.
    Work that waits for a moment (a grace's end, a digest, a trailing push) is run when the scenario reaches
    it, not by moving the clock on."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def now(self) -> datetime:
        return START + timedelta(seconds=self.seconds)

    def sleep(self, seconds: float) -> None:
        self.seconds += seconds

    def second(self) -> float:
        return self.seconds


@dataclass
class Later:
    """Work handed off to run at a moment: the delay queue's tasks at their delay, trailing pushes at their due."""

    clock: SimClock
    due: list[tuple[float, int, Any]] = field(default_factory=list)

    def run_until(self, seconds: float) -> None:
        """Run what falls due up to `seconds`, each at its moment, with what it hands off in turn."""
        self.collect()
        while self.due and min(self.due)[0] <= seconds:
            self.due.sort(key=lambda entry: (entry[0], entry[1]))
            at, _, task = self.due.pop(0)
            self.clock.seconds = max(self.clock.seconds, at)
            if isinstance(task, MetricsDue):
                invoke(DEFERRED_HANDLER, task.model_dump(by_alias=True, mode="json"))
            else:
                invoke(DELAYED_HANDLER, sqs_event([json.dumps(task.model_dump(by_alias=True, mode="json"))]))
            self.collect()
        self.clock.seconds = max(self.clock.seconds, seconds)

    def collect(self) -> None:
        """Run what was handed off at once, as the deferred function would (chunk workers' posts are left out:
        their budget claims are the broadcast queue's); keep what waits for a moment."""
        services = runtime.services()
        while True:
            tasks = services.deferrer.take()  # type: ignore[attr-defined]
            delayed = services.delayer.take()  # type: ignore[attr-defined]
            if not tasks and not delayed:
                return
            for task, delay in delayed:
                self.due.append((self.clock.seconds + delay, len(self.due), task))
            for task in tasks:
                if isinstance(task, MetricsDue):
                    self.due.append((task.due_ms / 1000 - START.timestamp(), len(self.due), task))
                elif not isinstance(task, BroadcastChunk):
                    invoke(DEFERRED_HANDLER, task.model_dump(by_alias=True, mode="json"))


@contextmanager
def world(
    shard_count: int | None, environment: dict[str, str] | None = None, exact: bool = False
) -> Iterator[tuple[Any, PartitionCounter, Later]]:
    """The real handlers against moto on the simulated clock, every shard count at `shard_count` (one: the key
    layout before sharding; None leaves them as built), their DynamoDB units counted (from the scenario's
    `counter.reset()` on)."""
    clock = SimClock()
    clock.seconds = -SET_UP_S
    counter = PartitionCounter(clock.second, exact=exact)
    saved = {name: os.environ.get(name) for name in environment or {}}
    os.environ.update(environment or {})
    try:
        with (
            shards(shard_count),
            bench_world(hook=lambda session: counter.watch(session.events), clock=clock) as (_, gateway),
        ):
            yield gateway, counter, Later(clock)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def shards(count: int | None) -> Iterator[None]:
    """Every shard count at `count` (one: the key layout before sharding); None leaves them as built."""
    saved = (
        analytics_store.ANALYTICS_SHARDS,
        rooms_store.COMPANY_ROOM_SHARDS,
        digest_store.DIGEST_SHARDS,
        connections_store.PRESENCE_SHARDS,
    )
    if count is not None:
        analytics_store.ANALYTICS_SHARDS = count
        rooms_store.COMPANY_ROOM_SHARDS = count
        digest_store.DIGEST_SHARDS = count
        connections_store.PRESENCE_SHARDS = count
        os.environ["HOUR_INDEX_SHARDS"] = str(count)
    try:
        yield
    finally:
        (
            analytics_store.ANALYTICS_SHARDS,
            rooms_store.COMPANY_ROOM_SHARDS,
            digest_store.DIGEST_SHARDS,
            connections_store.PRESENCE_SHARDS,
        ) = saved
        os.environ.pop("HOUR_INDEX_SHARDS", None)


def storm(agents: int, shard_count: int | None) -> PartitionCounter:
    """`agents` of one company drop at once and reconnect over STORM_SECONDS; the digest threshold and the
    digests' post rate scaled with the company, so that it coalesces its presence as the full one would."""
    environment = {
        "PRESENCE_DIGEST_THRESHOLD": str(max(1, agents * DIGEST_THRESHOLD // FULL_STORM)),
        "PRESENCE_POSTS_PER_SECOND": str(max(1, agents * DIGEST_POSTS_PER_S // FULL_STORM)),
    }
    with world(shard_count, environment, exact=True) as (gateway, counter, later):
        peers = [Peer(gateway, f"c-{index}", f"u-{index}", "big") for index in range(agents)]
        for peer in peers:
            peer.connect()
            later.collect()
        later.run_until(-1)  # the sign-ins' digests: set-up, before the storm starts
        counter.reset()
        for peer in peers:
            peer.disconnect()
            later.collect()
        for index, peer in enumerate(peers):
            later.run_until(STORM_SECONDS * index / agents)
            Peer(gateway, f"r-{index}", peer.user_id, "big").connect()
            later.collect()
        later.run_until(STORM_SECONDS + SET_UP_S)
        MEMBER_BYTES[agents] = _member_bytes("big")
    return counter


def _member_bytes(company_id: str) -> float:
    """A company-room membership's stored size, the mean over the room (read outside the counted session)."""
    client = boto3.client("dynamodb")
    sizes = [
        item_size(item)
        for pk in rooms_store.room_partitions(company_room(company_id).key(company_id))
        for item in client.query(
            TableName=TABLES["ConnectionsTable"],
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": pk}},
        )["Items"]
    ]
    return sum(sizes) / max(1, len(sizes))


def messages(shard_count: int | None) -> dict[str, dict[str, tuple[float, str]]]:
    with world(shard_count) as (gateway, counter, later):
        viewer = Peer(gateway, "viewer", "boss", "busy").connect()
        viewer.ok("analytics:subscribe")
        agents = [Peer(gateway, f"a-{index}", f"u-{index}", "busy").connect() for index in range(20)]
        conversations = [agent.ok("conversation:create", {})["conversation"]["id"] for agent in agents]
        later.run_until(-1)
        counter.reset()
        for index in range(MESSAGE_SENDS):
            later.run_until(index / MESSAGES_PER_S)
            agent = agents[index % len(agents)]
            agent.ok("message:send", {"conversationId": conversations[index % len(agents)], "content": "hi"})
            later.collect()
        # The sample's trailing push, due a second after the first push: counted with the sample, which stands
        # for the whole second (an overstatement of the push item's second by the rate's factor).
        later.run_until(2.0)
    rate = MESSAGES_PER_S / MESSAGE_SENDS
    found = busiest(counter, one_second=True)
    return {kind: {name: (units * rate, pk) for name, (units, pk) in keys.items()} for kind, keys in found.items()}


def tenants(shard_count: int | None) -> dict[str, dict[str, tuple[float, str]]]:
    companies = ("t-0", "t-1")
    sends_per_s = TENANTS * AGENTS * SENDS_PER_AGENT_DAY / 86_400
    reconnects_per_s = TENANTS * AGENTS / CONNECTION_LIFE_S
    events = sorted(
        [(index / sends_per_s, "send") for index in range(int(sends_per_s * TENANT_WINDOW_S))]
        + [(index / reconnects_per_s, "reconnect") for index in range(int(reconnects_per_s * TENANT_WINDOW_S))]
    )
    with world(shard_count) as (gateway, counter, later):
        peers = {
            company: [Peer(gateway, f"{company}-{n}", f"u-{n}", company).connect() for n in range(CONNECTED)]
            for company in companies
        }
        conversations = {
            company: peers[company][0].ok("conversation:create", {})["conversation"]["id"] for company in companies
        }
        later.run_until(-1)
        counter.reset()
        for index, (at, kind) in enumerate(events):
            later.run_until(at)
            company = companies[index % 2]
            peer = peers[company][index % CONNECTED]
            if kind == "send":
                peer.ok("message:send", {"conversationId": conversations[company], "content": "hi"})
            else:
                peer.disconnect()
                again = Peer(gateway, f"{peer.connection_id}+", peer.user_id, company)
                peers[company][index % CONNECTED] = again.connect()
            later.collect()
    tenant_share = len(companies) / TENANTS
    return {
        kind: {name: (units * (tenant_share if "{id}" in name else 1.0), pk) for name, (units, pk) in found.items()}
        for kind, found in busiest(counter).items()
    }


def _fit(sizes: tuple[int, ...], values: list[float], full: int, linear: bool = False) -> float:
    """`a * n + b * n^2` through the points (least squares, neither term negative), at `full`: a storm's
    events grow with n, and each broadcast among them reads a room that grows with n too. `linear`: `a * n`
    alone, for writes: each is one event's, of an item that does not grow with the company."""
    if linear:
        return float(sum(v * n for n, v in zip(sizes, values, strict=True)) / sum(n * n for n in sizes) * full)
    moments = [[sum(n ** (i + j + 2) for n in sizes) for j in range(2)] for i in range(2)]
    targets = [sum(v * n ** (i + 1) for n, v in zip(sizes, values, strict=True)) for i in range(2)]
    det = moments[0][0] * moments[1][1] - moments[0][1] * moments[1][0]
    linear_term = (targets[0] * moments[1][1] - targets[1] * moments[0][1]) / det
    square = (targets[1] * moments[0][0] - targets[0] * moments[1][0]) / det
    if square < 0:
        linear_term, square = targets[0] / moments[0][0], 0.0
    elif linear_term < 0:
        linear_term, square = 0.0, targets[1] / moments[1][1]
    return float(linear_term * full + square * full**2)


def _storm_full(shard_count: int | None) -> dict[str, dict[str, tuple[float, str]]]:
    counters = [storm(agents, shard_count) for agents in STORM_SIZES]
    runs = [busiest(counter) for counter in counters]
    spreads = [spread(counter) for counter in counters]
    # What one broadcast to the full company room reads from its busiest partition: the split's whole read.
    per_partition = FULL_STORM / (shard_count or rooms_store.COMPANY_ROOM_SHARDS)
    room_bytes = per_partition * MEMBER_BYTES[STORM_SIZES[-1]]
    ROOM_READS[shard_count or rooms_store.COMPANY_ROOM_SHARDS] = math.ceil(room_bytes / READ_UNIT_BYTES)
    fitted: dict[str, dict[str, tuple[float, str]]] = {}
    for kind in ("reads", "writes"):
        fitted[kind] = {}
        for name in set().union(*(run[kind] for run in runs)):
            values = [run[kind].get(name, (0.0, ""))[0] for run in runs]
            fit = _fit(STORM_SIZES, values, FULL_STORM, linear=kind == "writes")
            fitted[kind][name] = (fit, runs[-1][kind].get(name, (0.0, ""))[1])
        # A sharded key: at n = 48 its busiest shard is mostly chance; at 10,000 the shard function's own share.
        for name in set().union(*(found[kind] for found in spreads)):
            totals = [found[kind].get(name, 0.0) for found in spreads]
            total = _fit(STORM_SIZES, totals, FULL_STORM, linear=kind == "writes")
            count = _shards_of(name, shard_count)
            by_user = name.startswith("presence#")
            fitted[kind][name] = (total * _busiest_share(count, by_user), fitted[kind].get(name, (0.0, ""))[1])
            # A company's presence partitions are all shards, shard 0 the unsharded key (decision 0107): its own
            # figure at n = 48 is a chance share of a few users, taken to 10,000; the shards' busiest stands for it.
            if by_user:
                fitted[kind].pop(name.removesuffix("#{shard}"), None)
    return fitted


def _shards_of(name: str, shard_count: int | None) -> int:
    if shard_count is not None:
        return shard_count
    if name.startswith("room#"):
        return rooms_store.COMPANY_ROOM_SHARDS
    if name.startswith("presence#"):
        return connections_store.PRESENCE_SHARDS
    if name.startswith("presence"):
        return digest_store.DIGEST_SHARDS
    return connections_store.HOUR_INDEX_SHARDS


def _busiest_share(shards: int, by_user: bool = False) -> float:
    """The busiest shard's share of 10,000 connections' ids (the storm's naming), by the shard function itself;
    `by_user`: of its 10,000 user ids (a company's presence items are sharded by user)."""
    prefix = "u-" if by_user else "r-"
    counts = Counter(rooms_store.hour_index_shard(f"{prefix}{index}", shards) for index in range(FULL_STORM))
    return max(counts.values()) / FULL_STORM


# Read units one broadcast to the 10,000-agent company room takes from each of its partitions, by partition count.
ROOM_READS: dict[int, int] = {}
# A company-room membership's stored bytes, by storm size.
MEMBER_BYTES: dict[int, float] = {}

SCENARIOS: dict[str, tuple[str, bool, Callable[[int | None], dict[str, dict[str, tuple[float, str]]]]]] = {
    "tenants": ("1,000 companies x 50 agents, 200 sends per agent-day", False, tenants),
    "storm": ("10,000 agents of one company drop and reconnect over 60 s", True, _storm_full),
    "messages": ("1,000 messages/s platform-wide, all in one watched company", False, messages),
}


def _top(found: dict[str, tuple[float, str]], count: int = 6) -> list[dict[str, Any]]:
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
