"""Writing the results: bench/results.json, the tables in docs/performance.md, and the fan-out and delivery plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import costs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
PLOT = ROOT / "docs" / "fanout.png"
LATENCY_PLOT = ROOT / "docs" / "delivery.png"
TABLE = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
DELIVERY_TARGET_MS = 50.0  # issue 14: delivery p99 at 20 messages/s


def plot(fanout: list[dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [row["n"] for row in fanout]
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    for key, label in (
        ("sequential_s", "boto3, one call after another"),
        ("boto3_pool_s", "boto3, 32-thread pool"),
        ("roomcast_s", "roomcast (SigV4 + aiohttp)"),
        ("ideal_s", "ideal: ceil(N/64) x 20 ms"),
    ):
        axes.plot(sizes, [row[key] for row in fanout], marker="o", label=label)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("recipients (N)")
    axes.set_ylabel("seconds to post to all")
    axes.set_title("Fan-out against a 20 ms @connections stand-in")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(PLOT)


def plot_delivery(sweeps: dict[str, list[dict[str, float]]], target_ms: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    for stack, colour in (("concurrent", "tab:blue"), ("serial", "tab:orange")):
        points = sweeps[stack]
        rates = [point["rate"] for point in points]
        axes.plot(rates, [point["p99_ms"] for point in points], marker="o", color=colour, label=f"{stack}: p99")
        axes.plot(rates, [point["p50_ms"] for point in points], marker=".", linestyle="--", color=colour,
                  label=f"{stack}: p50")  # fmt: skip
    axes.axhline(target_ms, color="grey", linewidth=0.8, linestyle=":", label=f"{target_ms:.0f} ms")
    axes.set_yscale("log")
    axes.set_xlabel("messages per second (rooms of 10, 200 clients)")
    axes.set_ylabel("delivery to the last member (ms)")
    axes.set_title("Local stack: delivery latency against message rate")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(LATENCY_PLOT)


_API_GATEWAY = "https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html"
_WEBSOCKET = "https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-execution-service-websocket-limits-table.html"
_LAMBDA = "https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html"
_DYNAMODB = "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html"
POSTS_LIMIT = ("API Gateway: 10,000 requests/s per account, which `@connections` posts count against", _API_GATEWAY)
# Every figure issue 23 names, as (key, scenario, target, AWS limit, its source). Pieces of several engineers
# write them into results["capacity"]; one not written yet reads "not measured".
CAPACITY_ROWS: tuple[tuple[str, str, str, tuple[str, str]], ...] = (
    (
        "flap_presence_posts_1000",
        "1,000 agents of one company online, each connection closed at 2 h and reopened within a second",
        "0 posts",
        POSTS_LIMIT,
    ),
    (
        "storm_presence_posts_1000",
        "1,000 agents of one company drop at once and reconnect over the next 60 s",
        "at most 40,000 posts",
        ("API Gateway: 500 new connections/s per account; 10,000 requests/s", _WEBSOCKET),
    ),
    (
        "login_wave_peak_posts_per_s_10000",
        "10,000 agents of one company sign in over 30 minutes",
        "at most 1,000 posts/s at the peak",
        POSTS_LIMIT,
    ),
    (
        "storm_share_of_concurrency",
        "the 10,000-agent storm's share of the account's Lambda executions",
        "at most 0.2",
        ("Lambda: 1,000 concurrent executions per account and region", _LAMBDA),
    ),
    (
        "max_key_writes_per_s",
        "the busiest partition key: 1,000 companies x 50 agents; the storm; 1,000 messages/s",
        "at most 1,000",
        ("DynamoDB: 1,000 write units/s per partition", _DYNAMODB),
    ),
    (
        "max_key_reads_per_s",
        "the busiest partition key, the same loads",
        "at most 3,000",
        ("DynamoDB: 3,000 read units/s per partition", _DYNAMODB),
    ),
    (
        "hot_conversation_msgs_per_s",
        "one conversation, many senders, gap-free seq (5 ms / 1,000 WCU stand-in)",
        "at least 300",
        ("DynamoDB: 1,000 write units/s per partition", _DYNAMODB),
    ),
    (
        "heartbeat_connections",
        "Socket.IO connections pinged every interval within the heartbeat's limits",
        "at least 100,000",
        ("Lambda: 1,000 concurrent executions, the function's timeout; API Gateway 10,000 requests/s", _LAMBDA),
    ),
)


def capacity_table(capacity: dict[str, Any]) -> list[str]:
    """Issue 23's figures: each key as measured, extrapolated or not measured yet."""
    lines = [
        "### Capacity within AWS's limits (issue 23)",
        "",
        "| key | scenario | before | after | target | figure | AWS limit | source |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for key, scenario, target, (limit, source) in CAPACITY_ROWS:
        entry = capacity.get(key)
        before: Any
        after: Any
        if entry is None:
            before, after, kind = "not measured", "not measured", "not measured"
        elif isinstance(entry, dict):
            before, after = entry.get("before", "not measured"), entry.get("after", entry.get("value", ""))
            if isinstance(before, dict):  # a figure of its own (presence_capacity's, hot_keys'): its value
                before = before.get("value", before.get("per_s", "not measured"))
            # presence_capacity's figures say in `how`, or by an `extrapolated` entry, that they were extrapolated.
            extrapolated = entry.get("extrapolated") or str(entry.get("how", "")).startswith("extrapolated")
            kind = "measured" if entry.get("measured") and not extrapolated else "extrapolated"
            if entry.get("basis"):
                notes.append(f"- `{key}`: {entry['basis']}")
        else:
            before, after, kind = "not measured", entry, "measured"
        lines.append(f"| `{key}` | {scenario} | {before} | {after} | {target} | {kind} | {limit} | {source} |")
    return [*lines, "", *notes, ""]


def markdown(results: dict[str, Any]) -> str:
    lines = ["### AWS calls per operation", "", "| operation | calls |", "|---|---|"]
    for operation, calls in results["calls"].items():
        lines.append(f"| `{operation}` | " + ", ".join(f"{name} {count}" for name, count in calls.items()) + " |")
    lines += ["", "DynamoDB items read per broadcast message:", "", "| operation | items read |", "|---|---|"]
    lines += [f"| `{operation}` | {items} |" for operation, items in results["items_read"].items()]
    lines += [
        "",
        "### Fan-out (seconds)",
        "",
        "| N | sequential | boto3 pool (32) | roomcast | ideal | roomcast CPU ms/post |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {row['n']} | {row['sequential_s']} | {row['boto3_pool_s']} | {row['roomcast_s']} | {row['ideal_s']} "
        f"| {row['roomcast_cpu_ms_per_post']} |"
        for row in results["fanout"]
    ]
    lines += ["", "![fan-out time against N](fanout.png)", ""]
    if "cpu" in results:
        lines += _table(
            "CPU in the function's process (ms; `python -m bench cpu`, DynamoDB served by moto in its own process)",
            results["cpu"],
        )
    lines += _table(
        "Path to delivery of a `message:send`, room of 10 (5 ms a DynamoDB call, 20 ms a post)", results["latency"]
    )
    if "hot_conversation" in results.get("capacity", {}):
        lines += _hot_conversation(results["capacity"])
    lines += _table("A room of 10,000 (20 ms stand-in, chunk workers)", results["large_room"])
    lines += _capacity(results.get("capacity", {}))
    lines += ["### Cold start (CPU to import, over `import boto3`)", ""]
    lines += [
        "As `make build` ships the code, compiled to bytecode; and from source, as every cold start compiled it "
        f"before (decision 0067). Load average {results.get('cold_start_load_average_1m', 'not recorded')}.",
        "",
    ]
    from_source = results.get("cold_start_from_source", {})
    lines += ["| module | ratio | median ms | ratio from source |", "|---|---|---|---|"]
    lines += [f"| `boto3` | 1 | {results['cold_start_ms']['boto3']} | 1 |"]
    lines += [
        f"| `{module}` | {ratio} | {results['cold_start_ms'][module]} | {from_source.get(module, '')} |"
        for module, ratio in results["cold_start"].items()
    ]
    e2e = results["e2e"]
    lines += [
        "",
        "### End to end through the local stack",
        "",
        "| measure | roomcast | original system |",
        "|---|---|---|",
    ]
    original = {
        "connect_p50_ms": "100-300 ms", "delivery_p50_ms": "10-50 ms", "rss_per_connection_kb": "50-100 KB",
        "held_connections": "1000+",
    }  # fmt: skip
    lines += [f"| {key} | {value} | {original.get(key, '')} |" for key, value in e2e.items() if key != "sweeps"]
    lines += [
        "",
        "Delivery latency against message rate, each step 5 s, up to the first rate at which a stack is overloaded "
        "(p50 over 1 s); the saturation rate is the highest before the first step with a p99 at or over 100 ms "
        "or under 90% delivered:",
        "",
        "| stack | messages/s | p50 ms | p99 ms | delivered / sent |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {stack} | {point['rate']} | {point['p50_ms']} | {point['p99_ms']} "
        f"| {point['delivered']} / {point['sent']} |"
        for stack, points in e2e["sweeps"].items()
        for point in points
    ]
    lines += ["", "![delivery latency against message rate](delivery.png)", ""]
    lines += capacity_table(results.get("capacity", {}))
    if "capacity" in results:
        lines += ["", *_hot_keys(results["capacity"])]
    lines += ["", *_table("Cost model (USD)", results["costs"])]
    lines += ["Prices (on-demand, " + costs.REGION + ", read " + costs.READ_ON + "):", ""]
    lines += ["| price | USD | per | source |", "|---|---|---|---|"]
    lines += [
        f"| {name} | {price['usd']:.10g} | {price['unit']} | {price['source']} |"
        for name, price in costs.PRICES.items()
    ]
    lines += ["", "Assumptions:", ""]
    lines += [f"- {name}: {text}" for name, text in costs.ASSUMPTIONS.items()]
    return "\n".join(lines)


def _hot_conversation(capacity: dict[str, Any]) -> list[str]:
    hot = capacity["hot_conversation"]
    lines = [
        "### One hot conversation (`python -m bench hot_conversation`; decision 0087)",
        "",
        f"Measured in simulated time against a stand-in for DynamoDB ({hot['stand_in']}), the real store code "
        "driving it; a write waits for its key's capacity. AWS's limit: 1,000 write units a second per partition "
        '(DynamoDB Developer Guide, "Service, account, and table quotas": throughput per partition). '
        f"`hot_conversation_msgs_per_s` {capacity['hot_conversation_msgs_per_s']} (target at least 300), before "
        f"{capacity['hot_conversation_msgs_per_s_before']}. With sessions on (each message also put in the "
        "company journal, decision 0102): "
        f"{capacity.get('hot_conversation_with_journal_msgs_per_s', 'not measured')} messages a second end to end, "
        f"before {capacity.get('hot_conversation_with_journal_msgs_per_s_before', 'not measured')}.",
        "",
        "| allocation | senders | messages/s | failed sends/s | busiest key write units/s | DynamoDB calls/message |",
        "|---|---|---|---|---|---|",
    ]
    allocations = (
        "before",
        "after",
        "after_with_client_message_ids",
        "end_to_end_journal_before",
        "end_to_end_journal_after",
    )
    for allocation in allocations:
        lines += [
            f"| {allocation} | {row['senders']} | {row['msgs_per_s']} | {row['failed_sends_per_s']} "
            f"| {row['busiest_key_write_units_per_s']} | {row['calls_per_message']} |"
            for row in hot.get(allocation, [])
        ]
    return [*lines, ""]


# DynamoDB's per-partition limits, which the busiest key is held to.
PARTITION_LIMITS_SOURCE = (
    "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html"
)


def _hot_keys(capacity: dict[str, Any]) -> list[str]:
    """The busiest partition key's units a second (`python -m bench hot_keys`), before and after sharding."""
    lines = [
        "### Busiest DynamoDB partition key (units a second, `python -m bench hot_keys`)",
        "",
        "| figure | scenario | before | after | AWS limit | measured / extrapolated |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("max_key_writes_per_s", "max_key_reads_per_s"):
        figure = capacity.get(name)
        if figure is None:
            continue
        for label, after, before in (
            ("", figure["busiest"], figure["before"]),
            (
                " (outside redesigns)",
                figure["outside_redesigns"],
                figure["outside_redesigns_before"],
            ),
        ):
            how = "extrapolated (fit over n = 12, 24, 48)" if after["extrapolated"] else "measured (rate scaled)"
            lines.append(
                f"| `{name}`{label} | {after['scenario']} | {before['per_s']} `{before['key']}` "
                f"| {after['per_s']} `{after['key']}` | {figure['target']} ([source]({PARTITION_LIMITS_SOURCE})) "
                f"| {how} |"
            )
    room = capacity.get("hot_keys", {}).get("company_room_read_units_per_partition_per_broadcast_10000", {})
    if "1" in room and "16" in room:
        lines += [
            "",
            f"A broadcast to a company room of 10,000 reads {room['16']} units from each of its 16 partitions "
            f"({room['1']} from its one partition before): the busiest partition stays within 3,000 a second up to "
            f"{3000 // room['16']} company-room broadcasts a second; with the presence digests (decision 0089) the "
            "storm makes a few.",
        ]
    scenarios = capacity.get("hot_keys", {}).get("scenarios", {})
    if scenarios:
        lines += [
            "",
            "The busiest keys of each scenario (units a second at full size; before: one shard of everything; "
            "flagged keys are another engineer's):",
            "",
            "| scenario | units | before | after |",
            "|---|---|---|---|",
        ]
        for scenario, found in scenarios.items():
            for kind in ("writes", "reads"):
                cells = [
                    ", ".join(_key_cell(entry) for entry in found.get(f"{kind}_{variant}", []))
                    for variant in ("before", "after")
                ]
                lines.append(f"| {scenario} | {kind} | {cells[0]} | {cells[1]} |")
    return [*lines, ""]


def _key_cell(entry: dict[str, Any]) -> str:
    flag = f" ({entry['redesign']})" if entry["redesign"] else ""
    units = f"{entry['per_s']:,.0f}" if entry["per_s"] >= 10 else f"{entry['per_s']:.1f}"
    return f"`{entry['key']}` {units}{flag}"


def _capacity(figures: dict[str, Any]) -> list[str]:
    """Issue 23's capacity figures: those with a value, a target and a before figure get a row each."""
    rows = [
        f"| `{key}` | {figure['before']['value']:,} | {figure['value']:,} | {figure['target']:,.0f} {figure['unit']} "
        f"| {figure.get('limit', '')} | {'yes' if figure['holds'] else 'no'} | {figure['how']} |"
        for key, figure in sorted(figures.items())
        if isinstance(figure, dict) and {"value", "target", "before", "unit", "holds", "how"} <= set(figure)
    ]
    if not rows:
        return []
    return [
        "### Capacity (issue 23)",
        "",
        "| key | before | after | target | AWS limit | holds | how |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        *_login_wave(figures.get("login_wave_peak_posts_per_s_10000", {})),
    ]


def _login_wave(wave: dict[str, Any]) -> list[str]:
    """The login wave at the template's defaults and at the threshold an operator sets for companies that sign in
    in waves (`python -m bench presence_capacity`, decision 0098)."""
    operator = wave.get("at_threshold_for_target")
    if not operator:
        return []
    lines = [
        "#### Presence in a login wave: the defaults and the threshold for waves",
        "",
        "| configuration | peak posts/s | status:* peak | digest peak | busiest second | target | holds |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {figure['configuration']} | {figure['value']:,} | {figure['status_posts_per_s']:,} "
        f"| {figure['digest_posts_per_s']:,} | {figure['busiest_second']} s | {figure['target']:,.0f} "
        f"| {'yes' if figure['holds'] else 'no'} |"
        for figure in (wave, operator)
    ]
    return [
        *lines,
        "",
        f"A company at or under `PresenceDigestThreshold` gets `status:*` within a second (SPEC 2): each sign-in "
        f"is a post to every colleague online, {wave['sign_ins_per_s']} sign-ins a second (measured, at 10,000 "
        "agents over 30 minutes) times the company room, which `PresencePostsPerSecond` does not bound. At the "
        "default threshold that is the peak, just before the company passes it; the digests after it peak at "
        "other seconds, so the peak is the busiest second of the two together, not their peaks added. An "
        "operator whose companies sign in in waves sets `PresenceDigestThreshold` to the posts a second allowed "
        f"/ their sign-ins a second: `threshold_for_target` = {wave['threshold_for_target']} here. The threshold "
        "is one value for the stack: every company past it gets `presence:changed` digests instead.",
        "",
    ]


def _table(title: str, figures: dict[str, Any]) -> list[str]:
    return [f"### {title}", "", "| measure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in figures.items()), ""]


def write(results: dict[str, Any]) -> None:
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    plot(results["fanout"])
    plot_delivery(results["e2e"]["sweeps"], DELIVERY_TARGET_MS)
    text = TABLE.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    TABLE.write_text(f"{head}{BEGIN}\n{markdown(results)}\n{END}{tail}")
