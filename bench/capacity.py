"""Capacity under AWS's limits (issue 23): the real handlers run in this process against moto at scaled sizes, on
simulated time, while `PartitionCounter` counts DynamoDB's read and write units per partition key per
simulated second; executions and posts are counted from what the handlers do. Each figure is fitted over n
and extrapolated to the scenario's size; results say which figures were measured and which extrapolated.

`PartitionCounter` is reusable: hand it a botocore event emitter (a boto3 session's `events`, or a client's
`meta.events`) and a clock, run the code, read `busiest("write")` / `busiest("read")`.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from shared.delivery.management_api import Delivery

Kind = Literal["read", "write"]

# DynamoDB's units: a write unit is 1 KB written, a read unit 4 KB read consistently (8 KB eventually); a
# transaction costs each of its items twice. https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/provisioned-capacity-mode.html
WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096
TRANSACTION_FACTOR = 2
# The per-partition ceilings: 1,000 write units and 3,000 read units a second.
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html
PARTITION_WRITES_PER_S = 1000
PARTITION_READS_PER_S = 3000

_EQUALS = re.compile(r"([#\w.]+)\s*=\s*(:\w+)")
_SINGLE_WRITES = {"PutItem": "Item", "UpdateItem": "Key", "DeleteItem": "Key"}


@dataclass(frozen=True)
class KeyLoad:
    """The busiest partition key of one kind, and the units it took in its busiest simulated second."""

    key: str
    """`table/pk-value` (a global secondary index: `table/index/value`)."""
    second: int
    units: float


# A Query is charged for the items it reads as stored, not for what a projection returns: a projected item is
# counted as what it returned, its partition key and this many bytes more (the attributes left out, near enough).
UNPROJECTED_BYTES = 40


def _value_size(attribute: Mapping[str, Any]) -> int:
    """A low-level attribute value's size as DynamoDB counts it, near enough: strings and binaries their bytes,
    numbers about a byte a two digits, a list or map 3 bytes and a byte an element more."""
    ((kind, value),) = attribute.items()
    if kind in ("S", "B"):
        return len(value.encode() if isinstance(value, str) else value)
    if kind == "N":
        return len(str(value)) // 2 + 1
    if kind in ("SS", "BS", "NS"):
        return sum(_value_size({kind[0]: member}) for member in value)
    if kind == "L":
        return 3 + sum(1 + _value_size(member) for member in value)
    if kind == "M":
        return 3 + item_size(value) + len(value)
    return 1  # BOOL, NULL


def item_size(item: Mapping[str, Any]) -> int:
    """An item's size as DynamoDB counts it, near enough: its attribute names and values."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value(attribute: Mapping[str, Any]) -> str:
    """A low-level attribute value (`{"S": "x"}`) as text."""
    ((_, value),) = attribute.items()
    return str(value)


@dataclass
class PartitionCounter:
    """DynamoDB read and write units per partition key per simulated second, counted from the low-level
    requests a botocore client makes (`provide-client-params` sees the parameters, `after-call` the answer).
    `now`: simulated seconds. `hash_keys`: a table's (or `table/index`'s) partition key attribute when it is
    not `pk`. As DynamoDB charges: a write a unit a KB (a conditional write that fails too), a read a unit per
    4 KB consistent and half that eventually consistent, each item of a transaction twice (a `ConditionCheck`
    in read units). `exact`: a Query's units as its bytes over 4 KB, not rounded up per call (at scaled sizes the
    rounding, not the data, would decide them)."""

    now: Callable[[], float]
    hash_keys: Mapping[str, str] = field(default_factory=dict)
    exact: bool = False
    units: dict[Kind, defaultdict[tuple[str, int], float]] = field(
        default_factory=lambda: {"read": defaultdict(float), "write": defaultdict(float)}
    )
    calls: Counter[str] = field(default_factory=Counter)

    def watch(self, events: Any) -> PartitionCounter:
        """Count the calls made through `events`: a boto3 session's `events` or a client's `meta.events`."""
        events.register("provide-client-params.dynamodb", self._before)
        events.register("after-call.dynamodb", self._after)
        return self

    def reset(self) -> None:
        for counter in self.units.values():
            counter.clear()
        self.calls.clear()

    def busiest(self, kind: Kind) -> KeyLoad | None:
        """The key that took the most units of `kind` in any one simulated second."""
        counted = self.units[kind]
        if not counted:
            return None
        (key, second), units = max(counted.items(), key=lambda entry: entry[1])
        return KeyLoad(key, second, units)

    def per_key(self, kind: Kind) -> dict[str, float]:
        """Each key's busiest second of `kind`."""
        found: dict[str, float] = {}
        for (key, _second), units in self.units[kind].items():
            found[key] = max(found.get(key, 0.0), units)
        return found

    def by_second(self, kind: Kind) -> dict[int, dict[str, float]]:
        """Units of `kind` by simulated second, then by key."""
        found: dict[int, dict[str, float]] = {}
        for (key, second), units in self.units[kind].items():
            found.setdefault(second, {})[key] = units
        return found

    def total(self, kind: Kind, prefix: str = "") -> float:
        """All units of `kind`, over keys starting with `prefix` (`table/pk-prefix`)."""
        return sum(units for (key, _second), units in self.units[kind].items() if key.startswith(prefix))

    def _add(self, kind: Kind, table: str, key: str, units: float) -> None:
        self.units[kind][(f"{table}/{key}", math.floor(self.now()))] += units

    def _partition(self, table: str, item: Mapping[str, Any], index: str | None = None) -> str:
        name = self.hash_keys.get(f"{table}/{index}" if index else table, "pk")
        return (f"{index}/" if index else "") + _value(item[name])

    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        operation = model.name
        self.calls[operation] += 1
        context["capacity_params"] = params
        if operation in _SINGLE_WRITES:
            table = params["TableName"]
            written = params[_SINGLE_WRITES[operation]]
            self._add("write", table, self._partition(table, written), _write_units(written))
        elif operation == "BatchWriteItem":
            for table, requests in params["RequestItems"].items():
                for request in requests:
                    ((kind, body),) = request.items()
                    written = body["Item"] if kind == "PutRequest" else body["Key"]
                    self._add("write", table, self._partition(table, written), _write_units(written))
        elif operation == "TransactWriteItems":
            for entry in params["TransactItems"]:
                ((action, body),) = entry.items()
                table = body["TableName"]
                written = body.get("Item") or body["Key"]
                if action == "ConditionCheck":
                    self._add("read", table, self._partition(table, written), TRANSACTION_FACTOR)
                else:
                    self._add(
                        "write", table, self._partition(table, written), TRANSACTION_FACTOR * _write_units(written)
                    )
        elif operation == "BatchGetItem":
            for table, request in params["RequestItems"].items():
                share = 1.0 if request.get("ConsistentRead") else 0.5
                for key in request["Keys"]:
                    self._add("read", table, self._partition(table, key), share)

    def _after(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        params: dict[str, Any] = context.get("capacity_params", {})
        operation = model.name
        share = 1.0 if params.get("ConsistentRead") else 0.5
        if operation == "GetItem":
            whole = max(1, math.ceil(item_size(parsed.get("Item", {})) / READ_UNIT_BYTES))
            self._add("read", params["TableName"], self._partition(params["TableName"], params["Key"]), whole * share)
        elif operation == "Query":
            table, index = params["TableName"], params.get("IndexName")
            partition = self._queried(params, index)
            extra = len("pk") + len(partition) + UNPROJECTED_BYTES if "ProjectionExpression" in params else 0
            read = sum(item_size(item) + extra for item in parsed.get("Items", []))
            units: float = read / READ_UNIT_BYTES if self.exact else max(1, math.ceil(read / READ_UNIT_BYTES))
            self._add("read", table, partition, units * share)

    def _queried(self, params: dict[str, Any], index: str | None) -> str:
        """The partition a Query reads: the value its key condition sets the partition key equal to."""
        table = params["TableName"]
        wanted = self.hash_keys.get(f"{table}/{index}" if index else table, "pk")
        names = params.get("ExpressionAttributeNames", {})
        values = params.get("ExpressionAttributeValues", {})
        for name, placeholder in _EQUALS.findall(params.get("KeyConditionExpression", "")):
            if names.get(name, name) == wanted:
                return (f"{index}/" if index else "") + _value(values[placeholder])
        raise ValueError(f"no partition key in {params.get('KeyConditionExpression')!r}")


def _write_units(written: Mapping[str, Any]) -> int:
    return max(1, math.ceil(item_size(written) / WRITE_UNIT_BYTES))


# ---- the model: the real handlers at scaled sizes, fitted over n, extrapolated ----

STORM_SIZES = (250, 500, 1000)
# Agents that storm through the handlers at each size: the storm's work is theirs times agents / STORM_SAMPLE.
STORM_SAMPLE = 4
HEARTBEAT_SIZES = (250, 500, 1000)
# One heartbeat invocation before the shards (decision 0038): 256 MB and the functions' 29 s (Globals).
HEARTBEAT_BEFORE_MB = 256
STORM_AGENTS = 10_000
STORM_WINDOW_S = 60.0
# A room of 10,000 is 20 chunks of 500 (decision 0052): the scaled storms keep 20 chunks a broadcast.
CHUNKS_PER_BROADCAST = 20
# AWS's published quotas. https://docs.aws.amazon.com/lambda/latest/dg/lambda-concurrency.html
ACCOUNT_CONCURRENCY = 1000
# Lambda gives a function CPU in proportion to its memory, a whole vCPU at 1,769 MB.
# https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory-computing.html
FULL_VCPU_MB = 1769
# What a call costs an execution besides its CPU: the stand-ins of bench.latency (5 ms DynamoDB, 20 ms post).
DYNAMODB_CALL_S = 0.005
POST_BATCH_S = 0.020


def fit(sizes: list[float], values: list[float]) -> tuple[float, float]:
    """`value = a * n ** b` by least squares on logarithms: (a, b)."""
    points = [(math.log(n), math.log(v)) for n, v in zip(sizes, values, strict=True) if v > 0]
    if len(points) < 2:
        return (values[-1] if values else 0.0), 0.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)
    return math.exp(mean_y - slope * mean_x), slope


def extrapolate(sizes: list[float], values: list[float], to: float) -> tuple[float, float]:
    """The fitted value at `to`, and the exponent of the fit."""
    a, b = fit(sizes, values)
    return a * to**b, b


@dataclass
class Work:
    """One handler's invocations: how many, and what they did between them (exclusive of nested invocations);
    per storming agent, fractions."""

    invocations: float = 0
    cpu_s: float = 0.0
    dynamodb_calls: float = 0
    post_batches: float = 0

    def add(self, cpu_s: float, calls: int, batches: int) -> None:
        self.invocations += 1
        self.cpu_s += cpu_s
        self.dynamodb_calls += calls
        self.post_batches += batches

    def seconds_each(self, memory_mb: int) -> float:
        """An invocation's duration on Lambda: its CPU at the function's share of a vCPU, its DynamoDB calls
        and post batches at the stand-ins' latency (one after another: an upper bound)."""
        if not self.invocations:
            return 0.0
        cpu = self.cpu_s / self.invocations / min(1.0, memory_mb / FULL_VCPU_MB)
        return cpu + (self.dynamodb_calls * DYNAMODB_CALL_S + self.post_batches * POST_BATCH_S) / self.invocations


class CountingGateway:
    """@connections that answers every post delivered and keeps only counts: posts, and calls of `post_many`
    (one batch each, sent at once)."""

    def __init__(self) -> None:
        self.posts = 0
        self.batches = 0

    def post_many(self, connection_ids: Sequence[str], _data: bytes) -> list[Delivery]:
        self.posts += len(connection_ids)
        self.batches += 1
        return [Delivery.DELIVERED] * len(connection_ids)

    def close(self, _connection_id: str) -> None:
        return None


@dataclass
class Executions:
    """Every in-process invocation of a handler (roomcast_local.testing.invoke), by handler (a broadcast by the
    kind of its task), with what it did exclusive of the invocations it ran in turn."""

    counter: PartitionCounter
    gateway: CountingGateway
    work: dict[str, Work] = field(default_factory=dict)
    _stack: list[list[float]] = field(default_factory=list)

    def wrap(self, invoke: Callable[[str, dict[str, Any]], Any]) -> Callable[[str, dict[str, Any]], Any]:
        def measured(handler: str, event: dict[str, Any]) -> Any:
            name = handler
            if handler == "handlers.broadcasts.handler":
                name += ":" + str(json.loads(event["Records"][0]["body"]).get("kind"))
            start = [time.process_time(), float(sum(self.counter.calls.values())), float(self.gateway.batches)]
            self._stack.append([0.0, 0.0, 0.0])
            try:
                return invoke(handler, event)
            finally:
                nested = self._stack.pop()
                now = [time.process_time(), float(sum(self.counter.calls.values())), float(self.gateway.batches)]
                total = [after - before for after, before in zip(now, start, strict=True)]
                own = [whole - inner for whole, inner in zip(total, nested, strict=True)]
                self.work.setdefault(name, Work()).add(own[0], int(own[1]), int(own[2]))
                if self._stack:
                    self._stack[-1] = [outer + whole for outer, whole in zip(self._stack[-1], total, strict=True)]

        return measured


def _memory_by_handler() -> dict[str, int]:
    from roomcast_local.template import load_template, resources

    template = load_template()
    default = int(template["Globals"]["Function"].get("MemorySize", 128))
    return {
        str(body["Properties"]["Handler"]): int(body["Properties"].get("MemorySize", default))
        for body in resources(template, "AWS::Serverless::Function").values()
    }


def _parameter(name: str) -> int:
    from roomcast_local.template import load_template

    return int(load_template()["Parameters"][name]["Default"])


@contextmanager
def _world(environment: dict[str, str]) -> Iterator[tuple[Executions, Any]]:
    """The real handlers against moto, posts counted, handed-off work queued, every invocation measured."""
    import boto3
    from moto import mock_aws

    from bench.calls import TABLES
    from roomcast_local import testing
    from roomcast_local.template import create_tables, load_template
    from shared.wiring import services as runtime
    from shared.wiring.services import build_services
    from shared.wiring.settings import settings

    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    settings.cache_clear()
    clock = SimulatedClock()
    try:
        with mock_aws():
            tables = {**TABLES, "RecoveryTable": settings().recovery_table}
            create_tables(boto3.client("dynamodb"), load_template(), tables)
            session = boto3.session.Session()
            counter = PartitionCounter(clock.now).watch(session.events)
            gateway = CountingGateway()
            deferrer, delayer, shards = testing.QueuedDeferrer(), testing.QueuedDelayer(), testing.QueuedShards()
            deferrer.auto = False
            built = build_services(
                settings(), gateway=gateway, session=session, deferrer=deferrer, delayer=delayer, shard_starter=shards
            )
            runtime.install(built)
            executions = Executions(counter, gateway)
            real_invoke = testing.invoke
            testing.invoke = executions.wrap(real_invoke)  # type: ignore[assignment]
            try:
                yield executions, clock
            finally:
                testing.invoke = real_invoke
                runtime.install(None)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        settings.cache_clear()


class SimulatedClock:
    """Seconds of the scenario, set by the scenario: nothing sleeps."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def now(self) -> float:
        return self.seconds


def _members(company_id: str, connection_ids: Sequence[str]) -> None:
    """Members of the company's room written straight into the table: the recipients of its broadcasts, not
    connected through the handlers (which would cost the bench a broadcast each, n² posts, to set up)."""
    from shared.protocol.rooms import company_room
    from shared.wiring import services as runtime

    table = runtime.services().connections._table
    key = company_room(company_id).key(company_id)
    with table.batch_writer() as batch:
        for connection_id in connection_ids:
            batch.put_item(Item={"pk": key, "sk": connection_id, "userId": f"u-{connection_id}"})


def _storm(agents: int) -> tuple[dict[str, Work], int]:
    """A company of `agents` in one large room of CHUNKS_PER_BROADCAST chunks; STORM_SAMPLE of them, connected
    through the handlers, drop and reconnect (a new connection each, as a client's reconnect is) with no presence
    grace, so each drop and each return is announced: the worst case. Returns the work per storming agent and
    the posts per agent. Budgets are out of reach here: what they do is modelled after."""
    from roomcast_local.testing import Peer, run_deferred

    chunk = max(1, agents // CHUNKS_PER_BROADCAST)
    environment = {
        "LARGE_ROOM_THRESHOLD": str(chunk),
        "BROADCAST_CHUNK": str(chunk),
        "PRESENCE_GRACE_SECONDS": "0",
        "POSTS_PER_SECOND": "1000000000",
        "COMPANY_POSTS_PER_SECOND": "1000000000",
    }
    with _world(environment) as (executions, clock):
        _members("storm", [f"m-{index:05d}" for index in range(agents - STORM_SAMPLE)])
        peers = [Peer(executions.gateway, f"s-{index:05d}", f"u-{index:05d}", "storm") for index in range(STORM_SAMPLE)]  # type: ignore[arg-type]
        for peer in peers:
            peer.connect()
        run_deferred()
        executions.work.clear()
        executions.counter.reset()
        posts_before = executions.gateway.posts
        for index, peer in enumerate(peers):
            clock.seconds = STORM_WINDOW_S * index / STORM_SAMPLE
            peer.disconnect()
            run_deferred()
            # A new connection, as a client's reconnect is: the old one's tombstone refuses its id.
            Peer(executions.gateway, f"r-{index:05d}", peer.user_id, "storm").connect()  # type: ignore[arg-type]
            run_deferred()
        per_agent = {
            name: Work(
                work.invocations / STORM_SAMPLE,
                work.cpu_s / STORM_SAMPLE,
                work.dynamodb_calls / STORM_SAMPLE,
                work.post_batches / STORM_SAMPLE,
            )
            for name, work in executions.work.items()
        }
        return per_agent, (executions.gateway.posts - posts_before) // STORM_SAMPLE


def _heartbeat(connections: int) -> tuple[Work, dict[str, Any]]:
    """`connections` Socket.IO connections recorded and in the heartbeat index by the real store (as $connect
    and the open packet's delivery leave them): one scheduled heartbeat run and its shards. Returns the shards'
    work and the busiest index key's reads."""
    from roomcast_local.testing import run_heartbeat
    from shared.stores.rooms import hour_index_shard
    from shared.wiring import services as runtime

    with _world({}) as (executions, clock):
        store = runtime.services().connections
        # The index entries as start_session writes them, in batches: the bench measures the pings, not set-up.
        hour = datetime.now(UTC).strftime("%Y-%m-%dT%H")
        with store._table.batch_writer() as batch:
            for index in range(connections):
                connection_id = f"h-{index:05d}"
                shard = hour_index_shard(connection_id, store.hour_index_shards)
                batch.put_item(Item={"pk": f"heartbeat#{hour}#{shard}", "sk": connection_id, "ttl": 0})
        executions.work.clear()
        executions.counter.reset()
        clock.seconds = 0.0
        pinged = run_heartbeat()
        if pinged != connections:
            raise RuntimeError(f"the heartbeat pinged {pinged} of {connections}")
        busiest = executions.counter.busiest("read")
        shards = executions.work["handlers.heartbeat.handler"]
        return shards, {
            "busiest_read_key": busiest.key if busiest else "",
            "busiest_read_units_per_s": busiest.units if busiest else 0.0,
        }


def _shard_balance(shards: int, connections: int = 100_000) -> float:
    """The mean shard's size over the largest's, for `connections` ids like API Gateway's (decision 0093)."""
    import base64
    import hashlib

    from shared.stores.rooms import hour_index_shard

    sizes = Counter(
        hour_index_shard(base64.b64encode(hashlib.sha256(str(index).encode()).digest()[:9]).decode(), shards)
        for index in range(connections)
    )
    return (connections / shards) / max(sizes.values())


def heartbeat_model(results: dict[str, Any]) -> dict[str, Any]:
    """Socket.IO connections the heartbeat pings within one interval, before (one invocation) and after (one per
    shard): each invocation's CPU within its timeout at its memory's share of a vCPU, at the CPU per ping
    measured here (the shard's index read and bookkeeping, moto included: an upper bound) plus the CPU per post
    the large-room bench measured for roomcast's posting code."""
    from roomcast_local.template import load_template, resources

    template = load_template()
    before_timeout = float(template["Globals"]["Function"]["Timeout"])
    (heartbeat,) = (
        body["Properties"]
        for body in resources(template, "AWS::Serverless::Function").values()
        if body["Properties"]["Handler"] == "handlers.heartbeat.handler"
    )
    timeout = float(heartbeat.get("Timeout", before_timeout))
    memory = _memory_by_handler()["handlers.heartbeat.handler"]
    shards = _parameter("HourIndexShards")
    sizes, cpu = [], []
    busiest: dict[str, Any] = {}
    for connections in HEARTBEAT_SIZES:
        work, busiest = _heartbeat(connections)
        sizes.append(float(connections))
        cpu.append(work.cpu_s)
    mean_n, mean_cpu = sum(sizes) / len(sizes), sum(cpu) / len(cpu)
    per_ping_s = sum((n - mean_n) * (c - mean_cpu) for n, c in zip(sizes, cpu, strict=True)) / sum(
        (n - mean_n) ** 2 for n in sizes
    )
    large_room = results.get("large_room", {})
    post_s = float(large_room.get("worker_cpu_ms_per_post", results.get("cpu", {}).get("post_ms", 0.0))) / 1000
    per_connection_s = max(per_ping_s, 0.0) + post_s

    def reach(memory_mb: int, seconds: float) -> float:
        return seconds * min(1.0, memory_mb / FULL_VCPU_MB) / per_connection_s

    balance = _shard_balance(shards)
    return {
        "before": round(reach(HEARTBEAT_BEFORE_MB, before_timeout)),
        "after": round(shards * reach(memory, timeout) * balance),
        "target": 100_000,
        "measured": False,
        "basis": (
            f"extrapolated: CPU per ping {per_ping_s * 1000:.3f} ms fitted over {list(HEARTBEAT_SIZES)} "
            f"connections (real heartbeat handler, moto in-process) + {post_s * 1000:.3f} ms per post "
            f"(large_room bench); {timeout:.0f} s timeout at {memory} MB (before: one invocation, "
            f"{before_timeout:.0f} s at {HEARTBEAT_BEFORE_MB} MB); "
            f"{shards} shards, largest shard {1 / balance:.3f} x the mean"
        ),
        "per_connection_cpu_ms": round(per_connection_s * 1000, 4),
        "shards": shards,
        "busiest_index_read_units_per_s": busiest.get("busiest_read_units_per_s", 0.0),
    }


def storm_model() -> dict[str, Any]:
    """The storm's share of the account's Lambda executions: 10,000 agents of one company drop at once and
    reconnect over a minute. Each handler's invocations and duration per storming agent are measured at
    STORM_SIZES, fitted over n and extrapolated to 10,000; executions are invocations x duration / window
    (Little's law). After: the broadcast queue runs at most BroadcastConcurrency of them. Before: chunk workers
    ran in the deferred function, each sleeping on the platform budget in its execution until its posts' turn."""
    memory = _memory_by_handler()
    runs = {agents: _storm(agents) for agents in STORM_SIZES}
    sizes = [float(agents) for agents in STORM_SIZES]
    names = sorted({name for work, _posts in runs.values() for name in work})
    seconds: dict[str, float] = {}
    invocations: dict[str, float] = {}
    for name in names:
        handler = name.split(":")[0]
        counts = [runs[agents][0].get(name, Work()).invocations for agents in STORM_SIZES]
        durations = [runs[agents][0].get(name, Work()).seconds_each(memory[handler]) for agents in STORM_SIZES]
        per_agent, _ = extrapolate(sizes, counts, STORM_AGENTS)
        each, _ = extrapolate(sizes, durations, STORM_AGENTS)
        invocations[name] = per_agent * STORM_AGENTS
        seconds[name] = invocations[name] * each
    posts, posts_exponent = extrapolate(sizes, [float(posts) for _work, posts in runs.values()], STORM_AGENTS)
    posts *= STORM_AGENTS
    broadcast = sum(value for name, value in seconds.items() if name.startswith("handlers.broadcasts"))
    other = sum(value for name, value in seconds.items() if not name.startswith("handlers.broadcasts"))
    other_executions = other / STORM_WINDOW_S
    cap = _parameter("BroadcastConcurrency")
    after = other_executions + min(float(cap), broadcast / STORM_WINDOW_S)
    # Before: every chunk handed off in the window held an execution until the platform budget reached it.
    chunks = sum(value for name, value in invocations.items() if name.endswith(":chunk"))
    platform = _parameter("PostsPerSecond")
    held = chunks if posts / platform > STORM_WINDOW_S else broadcast / STORM_WINDOW_S
    before = min(float(ACCOUNT_CONCURRENCY), other_executions + held)
    company = _parameter("CompanyPostsPerSecond")
    return {
        "before": round(before / ACCOUNT_CONCURRENCY, 3),
        "after": round(after / ACCOUNT_CONCURRENCY, 3),
        "target": 0.2,
        "measured": False,
        "basis": (
            f"extrapolated: handlers run for {STORM_SAMPLE} storming agents at {list(STORM_SIZES)} agents, "
            f"fitted and taken to {STORM_AGENTS}; duration = CPU at the function's vCPU share + 5 ms a DynamoDB "
            f"call + 20 ms a post batch; no presence grace (every drop and return announced)"
        ),
        "storm_executions": round(after),
        "broadcast_executions_demanded": round(broadcast / STORM_WINDOW_S),
        "broadcast_concurrency": cap,
        "other_executions": round(other_executions, 1),
        "posts": round(posts),
        "posts_exponent": round(posts_exponent, 2),
        "chunks": round(chunks),
        "drain_hours_at_company_budget": round(posts / company / 3600, 1),
    }


def run(results: dict[str, Any] | None = None) -> dict[str, Any]:
    """The capacity figures this piece owns, for results["capacity"] (merged with the other pieces' keys)."""
    import bench.calls  # noqa: F401 (the handlers' environment: moto's credentials, the bench's table names)

    known = results or {}
    return {
        "storm_share_of_concurrency": storm_model(),
        "heartbeat_connections": heartbeat_model(known),
    }
