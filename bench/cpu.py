"""CPU per operation in the function's process (issue 24): a `@connections` post, and a `message:send` to a room of
10, each beside its plain boto3 counterpart measured in the same run against the same server, so that the ratios
hold whatever the machine's load. `python -m bench cpu` runs this alone.

- post: roomcast's sender (`ManagementApi.post_many`, batches of 100) against boto3's `post_to_connection`, one
  call after another, both to the 20 ms stand-in (bench.management_stub) over kept-alive connections.
- send: the conversations function's handler, as Lambda invokes it, on DynamoDB served by moto in a process of
  its own (roomcast_local.storage, as the local stack runs it) and posting for real to the stand-in; against one
  plain boto3 client `get_item` of the same conversation item. Logging at the template's level (INFO) and
  metrics on, as deployed (their output goes to /dev/null here, to stdout in Lambda).
- breakdown: one profiled run of the same sends, with the send's concurrent reads run on its own thread (so one
  profiler sees them), each function's own time assigned to the package it belongs to, scaled to the measured
  CPU per send; the posts' CPU (on the sender's event-loop thread) is the post figure times the members.
"""

from __future__ import annotations

import contextlib
import copy
import cProfile
import os
import pstats
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import boto3
from botocore.config import Config

from bench.fanout import PAYLOAD

ROOM = 10
POSTS = 3000
BOTO3_POSTS = 300
SENDS = 200
WARM_SENDS = 30
CALLS = 300
TABLES = {
    "ConnectionsTable": "cpu-connections",
    "ConversationsTable": "cpu-conversations",
    "NotificationsTable": "cpu-notifications",
    "IdempotencyTable": "cpu-idempotency",
    "AnalyticsTable": "cpu-analytics",
    "RecoveryTable": "cpu-recovery",
}
# What a function's own time counts as, by the file it is in. The stores' own modules (what a call is made of)
# are "the rest", with the domain, the handlers and the standard library they call. On the send's thread the signer
# signs DynamoDB calls only: posts are signed on the sender's event-loop thread.
DYNAMODB_CLIENT = ("/botocore/", "/boto3/", "/urllib3/", "/http/client.py", "/socket.py", "/ssl.py", "/email/",
                   "/urllib/", "/hmac.py", "/awscrt/", "/shared/stores/dynamo.py", "/shared/stores/dynamo_client.py",
                   "/shared/stores/dynamo_http.py", "/httptools/", "/shared/protocol/signing.py")  # fmt: skip
CATEGORIES = (
    ("dynamodb_client", DYNAMODB_CLIENT),
    ("posts", ("/aiohttp/", "/yarl/", "/multidict/", "/asyncio/", "/shared/delivery/management_api.py")),
    ("models", ("/pydantic/", "/pydantic_core/", "/shared/protocol/")),
    ("logging_and_metrics", ("/aws_lambda_powertools/", "/logging/", "/shared/observability.py")),
)


def _repeat(count: int, call: Callable[[], object]) -> None:
    for _ in range(count):
        call()


def _cpu_ms_per(count: int, work: Callable[[], object]) -> float:
    started = time.process_time()
    work()
    return (time.process_time() - started) / count * 1000


@contextlib.contextmanager
def _process(module: str) -> Iterator[str]:
    """A server of bench or the local stack in its own process; yields the first line it prints."""
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", module], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.kill()
        process.wait()


def _session() -> boto3.session.Session:
    return boto3.session.Session(aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1")


def posts(url: str) -> dict[str, float]:
    from shared.delivery.management_api import ManagementApi

    session = _session()
    client = session.client("apigatewaymanagementapi", endpoint_url=url, config=Config(max_pool_connections=32))
    credentials = session.get_credentials()
    assert credentials is not None
    sender = ManagementApi(url, "us-east-1", credentials, 96, client)
    ids = [f"conn-{index:05d}" for index in range(100)]
    try:
        for _ in range(3):  # warm: connections open, code loaded, as in a warm container
            sender.post_many(ids, PAYLOAD)
            client.post_to_connection(ConnectionId="warm", Data=PAYLOAD)
        boto3_ms = _cpu_ms_per(
            BOTO3_POSTS,
            lambda: [client.post_to_connection(ConnectionId=cid, Data=PAYLOAD) for cid in ids * (BOTO3_POSTS // 100)],
        )
        ours_ms = _cpu_ms_per(POSTS, lambda: [sender.post_many(ids, PAYLOAD) for _ in range(POSTS // 100)])
    finally:
        sender.shutdown()
    return {
        "post_ms": round(ours_ms, 4),
        "boto3_post_ms": round(boto3_ms, 4),
        "post_ratio": round(ours_ms / boto3_ms, 3),
    }


class _Inline:
    """An executor that runs what it is given at once, on the caller's thread: the profiled run's pool."""

    def submit(self, call: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(call())
        except Exception as error:
            future.set_exception(error)
        return future


def _category(filename: str) -> str:
    for name, markers in CATEGORIES:
        if any(marker in filename for marker in markers):
            return name
    return "rest"


def _breakdown(profile: cProfile.Profile) -> dict[str, float]:
    """Each function's own time, summed by the category of the file it is in, as fractions of the whole. A
    builtin's time (a `str.join`, a socket's `send`) goes to the categories of the functions that called it."""
    stats: dict[Any, Any] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    totals: dict[str, float] = {}
    for (filename, _, _), (_, _, own, _, callers) in stats.items():
        if filename != "~":
            totals[_category(filename)] = totals.get(_category(filename), 0.0) + own
            continue
        for (caller_file, _, _), (_, _, caller_own, _) in callers.items():
            category = "rest" if caller_file == "~" else _category(caller_file)
            totals[category] = totals.get(category, 0.0) + caller_own
    if os.environ.get("BENCH_CPU_PROFILE"):
        pstats.Stats(profile, stream=sys.stderr).sort_stats(os.environ["BENCH_CPU_PROFILE"]).print_stats(70)
    whole = sum(totals.values()) or 1.0
    return {name: share / whole for name, share in totals.items()}


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def sends(url: str, endpoint: str, post_ms: float) -> dict[str, float]:
    from roomcast_local.environment import DEVELOPMENT_SECRET

    environment = {
        "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_DYNAMODB": endpoint, "MANAGEMENT_API_URL": url,
        "CONNECTIONS_TABLE": TABLES["ConnectionsTable"], "CONVERSATIONS_TABLE": TABLES["ConversationsTable"],
        "NOTIFICATIONS_TABLE": TABLES["NotificationsTable"], "IDEMPOTENCY_TABLE": TABLES["IdempotencyTable"],
        "ANALYTICS_TABLE": TABLES["AnalyticsTable"], "RECOVERY_TABLE": TABLES["RecoveryTable"],
        "JWT_SECRET_KEY_CALL": DEVELOPMENT_SECRET,
        "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "false", "POWERTOOLS_LOG_LEVEL": "INFO",
        # A real user's sends are spaced: each is admitted in one UpdateItem, as at any rate under the limit.
        "RATE_LIMIT_PER_SECOND": "100000", "RATE_LIMIT_BURST": "100000",
    }  # fmt: skip
    with (
        _environment(environment),
        open(os.devnull, "w") as sink,
        contextlib.redirect_stdout(sink),
        _world(endpoint) as (send, key),
    ):
        _repeat(WARM_SENDS, send)
        calls = single_calls(endpoint, key)
        wall = time.perf_counter()
        send_ms = _cpu_ms_per(SENDS, lambda: _repeat(SENDS, send))
        wall_ms = (time.perf_counter() - wall) / SENDS * 1000
        shares = _profiled(send)
    posts_ms = post_ms * ROOM  # the sender's own connection is a member too
    rest_of_send = send_ms - posts_ms
    breakdown = {
        f"send_{name}_ms": round(rest_of_send * share, 3) for name, share in sorted(shares.items()) if name != "posts"
    }
    breakdown["send_posts_ms"] = round(posts_ms + rest_of_send * shares.get("posts", 0.0), 3)
    return {
        "send_ms": round(send_ms, 3),
        **calls,
        "send_ratio": round(send_ms / calls["boto3_call_ms"], 3),
        "send_wall_ms": round(wall_ms, 3),
        **dict(sorted(breakdown.items())),
    }


@contextlib.contextmanager
def _world(endpoint: str) -> Iterator[tuple[Callable[[], None], dict[str, str]]]:
    """The conversations function's services on moto's server, a sender and a conversation whose room has ten
    members; yields a send (one invocation, as Lambda makes it) and the conversation item's key."""
    from roomcast_local.template import create_tables, load_template
    from roomcast_local.testing import Peer, QueuedDeferrer, RecordingGateway, invoke, message_event
    from shared.delivery.management_api import ManagementApi
    from shared.observability import logger
    from shared.protocol.rooms import conversation_room
    from shared.wiring import services as runtime
    from shared.wiring.services import build_services
    from shared.wiring.settings import settings

    logger.setLevel("INFO")
    settings.cache_clear()
    session = _session()
    create_tables(session.client("dynamodb", endpoint_url=endpoint), load_template(), TABLES)
    deferrer = QueuedDeferrer()
    deferrer.auto = False  # what a send hands off runs in another function, after its reply
    config = settings()
    credentials = session.get_credentials()
    assert credentials is not None
    client = session.client("apigatewaymanagementapi", endpoint_url=config.management_api_url)
    gateway = ManagementApi(config.management_api_url, "us-east-1", credentials, config.fanout_concurrency, client)
    runtime.install(build_services(config, gateway=gateway, session=session, deferrer=deferrer))
    try:
        sender = Peer(RecordingGateway(), "sender", "sender", "acme").connect()
        conversation = sender.ok("conversation:create", {})["conversation"]["id"]
        connections = session.resource("dynamodb", endpoint_url=endpoint).Table(TABLES["ConnectionsTable"])
        room = conversation_room(conversation).key("acme")
        with connections.batch_writer() as batch:
            for index in range(ROOM - 1):
                batch.put_item(Item={"pk": room, "sk": f"member-{index}", "userId": "member"})
        frame = f'{{"action":"message:send","data":{{"conversationId":"{conversation}","content":"hi"}},"ackId":"1"}}'
        template = message_event("sender", "sender", "acme", frame)
        template["requestContext"]["routeKey"] = "message:send"

        def send() -> None:
            response = invoke("handlers.conversations.handler", copy.deepcopy(template))
            assert '"ok":true' in response["body"].replace(" ", ""), response
            deferrer.take()

        yield send, {"pk": f"conv#acme#{conversation}", "sk": "#conversation"}
    finally:
        gateway.shutdown()
        runtime.install(None)
        settings.cache_clear()


def single_calls(endpoint: str, key: dict[str, str]) -> dict[str, float]:
    """CPU of one consistent GetItem of the conversation: boto3's client (the baseline), boto3's Table resource,
    roomcast's Table, and aiodynamo (an asyncio client on aiohttp, no botocore) when it is installed."""
    session = _session()
    client = session.client("dynamodb", endpoint_url=endpoint)
    raw: Any = {name: {"S": value} for name, value in key.items()}
    table_name = TABLES["ConversationsTable"]
    resource = session.resource("dynamodb", endpoint_url=endpoint).Table(table_name)
    calls: dict[str, Callable[[], object]] = {
        "boto3_call_ms": lambda: client.get_item(TableName=table_name, Key=raw, ConsistentRead=True),
        "boto3_resource_call_ms": lambda: resource.get_item(Key=key, ConsistentRead=True),
    }
    try:  # decision 0076's Table; absent when this bench measures an older tree
        from shared.stores.dynamo import Table

        ours = Table(session.client("dynamodb", endpoint_url=endpoint), table_name)
        calls["roomcast_table_call_ms"] = lambda: ours.get_item(Key=key, ConsistentRead=True)
    except ImportError:
        pass
    figures = {}
    for name, call in calls.items():
        _repeat(10, call)
        figures[name] = round(_cpu_ms_per(CALLS, lambda call=call: _repeat(CALLS, call)), 3)  # type: ignore[misc]
    aiodynamo = _aiodynamo_call_ms(endpoint, table_name, key)
    if aiodynamo is not None:
        figures["aiodynamo_call_ms"] = aiodynamo
    return figures


def _aiodynamo_call_ms(endpoint: str, table_name: str, key: dict[str, str]) -> float | None:
    try:
        from aiodynamo.client import Client
        from aiodynamo.credentials import Key, StaticCredentials
        from aiodynamo.http.aiohttp import AIOHTTP
    except ImportError:
        return None
    import asyncio

    import aiohttp
    from yarl import URL

    async def measure() -> float:
        async with aiohttp.ClientSession() as http:
            client = Client(AIOHTTP(http), StaticCredentials(Key("bench", "bench")), "us-east-1", URL(endpoint))
            table = client.table(table_name)
            for _ in range(10):
                await table.get_item(key, consistent_read=True)
            started = time.process_time()
            for _ in range(CALLS):
                await table.get_item(key, consistent_read=True)
            return (time.process_time() - started) / CALLS * 1000

    return round(asyncio.run(measure()), 3)


def _profiled(send: Callable[[], None]) -> dict[str, float]:
    """The breakdown of a send's CPU on its own thread (the reads it runs at once, run in turn here)."""
    from shared.domain import together

    # This thread's CPU, not the wall clock: the time a call waits for moto is not the function's CPU.
    profile = cProfile.Profile(time.thread_time)
    pool = together._POOL
    together._POOL = _Inline()  # type: ignore[assignment]
    try:
        profile.runcall(_repeat, SENDS // 2, send)
    finally:
        together._POOL = pool
    return _breakdown(profile)


def run() -> dict[str, float]:
    load = os.getloadavg()[0]
    with _process("bench.management_stub") as port:
        url = f"http://127.0.0.1:{port}/prod"
        post = posts(url)
        print(f"  cpu per post: {post}", flush=True)
        with _process("roomcast_local.storage") as endpoint:
            send = sends(url, endpoint, post["post_ms"])
    figures = {**post, **send, "load_average_1m": round(load, 2), "load_average_1m_after": round(os.getloadavg()[0], 2)}
    print(f"  cpu per send: {send}", flush=True)
    return figures
