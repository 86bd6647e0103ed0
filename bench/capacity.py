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
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

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


def _size(item: Mapping[str, Any]) -> int:
    """An item's size as DynamoDB counts it, near enough: its attribute names and values as JSON."""
    return len(json.dumps(item, separators=(",", ":"), default=str))


def _value(attribute: Mapping[str, Any]) -> str:
    """A low-level attribute value (`{"S": "x"}`) as text."""
    ((_, value),) = attribute.items()
    return str(value)


@dataclass
class PartitionCounter:
    """DynamoDB read and write units per partition key per simulated second, counted from the low-level
    requests a botocore client makes (`provide-client-params` sees the parameters, `after-call` the answer).
    `now`: simulated seconds. `hash_keys`: a table's (or `table/index`'s) partition key attribute when it is
    not `pk`. A conditional write that fails still costs its units, as in DynamoDB."""

    now: Callable[[], float]
    hash_keys: Mapping[str, str] = field(default_factory=dict)
    units: dict[Kind, Counter[tuple[str, int]]] = field(default_factory=lambda: {"read": Counter(), "write": Counter()})
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
        (key, second), units = counted.most_common(1)[0]
        return KeyLoad(key, second, units)

    def per_key(self, kind: Kind) -> dict[str, float]:
        """Each key's busiest second of `kind`."""
        found: dict[str, float] = {}
        for (key, _second), units in self.units[kind].items():
            found[key] = max(found.get(key, 0.0), units)
        return found

    def total(self, kind: Kind, prefix: str = "") -> float:
        """All units of `kind`, over keys starting with `prefix` (`table/pk-prefix`)."""
        return sum(units for (key, _second), units in self.units[kind].items() if key.startswith(prefix))

    def _add(self, kind: Kind, table: str, key: str, units: int) -> None:
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
            self._add(
                "write", table, self._partition(table, written), max(1, math.ceil(_size(written) / WRITE_UNIT_BYTES))
            )
        elif operation == "BatchWriteItem":
            for table, requests in params["RequestItems"].items():
                for request in requests:
                    ((kind, body),) = request.items()
                    written = body["Item"] if kind == "PutRequest" else body["Key"]
                    units = max(1, math.ceil(_size(written) / WRITE_UNIT_BYTES))
                    self._add("write", table, self._partition(table, written), units)
        elif operation == "TransactWriteItems":
            for entry in params["TransactItems"]:
                ((_, body),) = entry.items()
                written = body.get("Item") or body["Key"]
                units = TRANSACTION_FACTOR * max(1, math.ceil(_size(written) / WRITE_UNIT_BYTES))
                self._add("write", body["TableName"], self._partition(body["TableName"], written), units)

    def _after(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        params: dict[str, Any] = context.get("capacity_params", {})
        operation = model.name
        consistent = bool(params.get("ConsistentRead"))
        per_unit = READ_UNIT_BYTES if consistent else 2 * READ_UNIT_BYTES
        if operation == "GetItem":
            units = max(1, math.ceil(_size(parsed.get("Item", {})) / per_unit))
            self._add("read", params["TableName"], self._partition(params["TableName"], params["Key"]), units)
        elif operation == "Query":
            table, index = params["TableName"], params.get("IndexName")
            read = sum(_size(item) for item in parsed.get("Items", []))
            self._add("read", table, self._queried(params, index), max(1, math.ceil(read / per_unit)))
        elif operation == "BatchGetItem":
            for table, request in params["RequestItems"].items():
                for key in request["Keys"]:
                    self._add("read", table, self._partition(table, key), 1)

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
