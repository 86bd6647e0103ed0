"""Fixtures: the test environment, moto-backed tables made from template.yaml, the handlers' services with a recording
@connections and a queued deferrer (roomcast_local.testing), and tokens."""

from __future__ import annotations

import functools
import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import jwt
import pytest
from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber

from roomcast_local.environment import DEVELOPMENT_SECRET

os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    CONNECTIONS_TABLE="test-connections",
    CONVERSATIONS_TABLE="test-conversations",
    NOTIFICATIONS_TABLE="test-notifications",
    IDEMPOTENCY_TABLE="test-idempotency",
    ANALYTICS_TABLE="test-analytics",
    RECOVERY_TABLE="test-recovery",
    MANAGEMENT_API_URL="https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/prod",
    JWT_SECRET_KEY_CALL=DEVELOPMENT_SECRET,
    POWERTOOLS_TRACE_DISABLED="true",
    POWERTOOLS_METRICS_NAMESPACE="roomcast-tests",
    POWERTOOLS_LOG_LEVEL="WARNING",
    # Most tests expect status:offline at once; the grace's own tests set it (tests/test_presence_grace.py).
    PRESENCE_GRACE_SECONDS="0",
    DELAY_QUEUE_URL="https://sqs.us-east-1.amazonaws.com/123456789012/test-delay",
)
# Only moto or the local stack may answer: a real endpoint must never be reached.
for variable in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
    os.environ.pop(variable, None)

from roomcast_local.template import create_tables, load_template  # noqa: E402
from roomcast_local.testing import ManualClock, QueuedDeferrer, QueuedDelayer, QueuedShards, RecordingGateway  # noqa: E402
from shared.stores.connections import CONNECT_GRACE  # noqa: E402
from shared.wiring import services as runtime  # noqa: E402
from shared.wiring.services import Services, build_services  # noqa: E402
from shared.wiring.settings import settings  # noqa: E402


def _one_request_at_a_time(process: Any) -> Any:
    """DynamoDB applies each request whole; in-process moto does not when threads call it at once (a put during
    another thread's query fails inside moto: "dictionary changed size during iteration"). The stores read
    partitions from thread pools, so tests that write meanwhile need moto to take one request at a time, as the
    local stack's DynamoDB does (roomcast_local.storage)."""
    lock = threading.RLock()

    @functools.wraps(process)
    def one_at_a_time(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return process(*args, **kwargs)

    return one_at_a_time


BotocoreStubber.process_request = _one_request_at_a_time(BotocoreStubber.process_request)  # type: ignore[method-assign]

SECRET = os.environ["JWT_SECRET_KEY_CALL"]
TABLE_NAMES = {
    "ConnectionsTable": "test-connections",
    "ConversationsTable": "test-conversations",
    "NotificationsTable": "test-notifications",
    "IdempotencyTable": "test-idempotency",
    "AnalyticsTable": "test-analytics",
    "RecoveryTable": "test-recovery",
}


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        create_tables(boto3.client("dynamodb"), load_template(), TABLE_NAMES)
        yield


@pytest.fixture
def gateway() -> RecordingGateway:
    return RecordingGateway()


class CallCounter:
    """Counts AWS calls made through a boto3 session, by operation name."""

    def __init__(self, session: boto3.session.Session) -> None:
        self.calls: Counter[str] = Counter()
        session.events.register("before-call", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[f"{model.service_model.service_name}.{model.name}"] += 1

    def reset(self) -> None:
        self.calls.clear()


@pytest.fixture
def deferred() -> QueuedDeferrer:
    return QueuedDeferrer()


@pytest.fixture
def delayed() -> QueuedDelayer:
    return QueuedDelayer()


@pytest.fixture
def clock() -> ManualClock:
    """The services' one clock: the system's time, until a test sets or advances it; waits take no time."""
    return ManualClock()


def settle(clock: ManualClock) -> None:
    """Move past the grace a young connection gets (a 410 during its $connect is no proof it is gone), so that
    the connections opened so far can be found gone."""
    clock.advance((CONNECT_GRACE + timedelta(seconds=1)).total_seconds())


@pytest.fixture
def session() -> boto3.session.Session:
    return boto3.session.Session()


@pytest.fixture
def calls(session: boto3.session.Session) -> CallCounter:
    return CallCounter(session)


class Interleaver:
    """Runs another Lambda invocation in the middle of this one: just before the first DynamoDB call
    of `operation` whose parameters mention every one of `needles`."""

    def __init__(self, session: boto3.session.Session) -> None:
        self._plans: list[tuple[str, tuple[str, ...], Callable[[], None]]] = []
        self.fired: list[str] = []
        # Registered before the services' clients are made: a client copies the hooks it is created with.
        session.events.register("before-parameter-build.dynamodb", self._hook)

    def before(self, operation: str, *needles: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
        def plan(action: Callable[[], None]) -> Callable[[], None]:
            self._plans.append((operation, needles, action))
            return action

        return plan

    def _hook(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        text = json.dumps(params, default=str)
        for planned in list(self._plans):
            operation, needles, action = planned
            if model.name == operation and all(needle in text for needle in needles):
                self._plans.remove(planned)
                self.fired.append(operation)
                action()


@pytest.fixture
def interleaver(session: boto3.session.Session) -> Interleaver:
    return Interleaver(session)


@pytest.fixture
def services(
    aws: None,
    gateway: RecordingGateway,
    deferred: QueuedDeferrer,
    delayed: QueuedDelayer,
    session: boto3.session.Session,
    calls: CallCounter,
    clock: ManualClock,
) -> Iterator[Services]:
    """The handlers' services, with @connections recorded, handed-off and delayed work queued, every AWS call
    counted, and the test's clock."""
    built = build_services(
        settings(),
        gateway=gateway,
        session=session,
        deferrer=deferred,
        clock=clock,
        delayer=delayed,
        shard_starter=QueuedShards(),
    )
    runtime.install(built)
    yield built
    runtime.install(None)


GRACE = 30
"""The presence grace of `graced`, in seconds."""


@pytest.fixture
def graced(
    aws: None,
    interleaver: Interleaver,
    gateway: RecordingGateway,
    deferred: QueuedDeferrer,
    delayed: QueuedDelayer,
    session: boto3.session.Session,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Services]:
    """The handlers' services with a presence grace of `GRACE`, as deployed; the interleaver's hooks are registered
    before their clients are made."""
    monkeypatch.setenv("PRESENCE_GRACE_SECONDS", str(GRACE))
    settings.cache_clear()
    built = build_services(
        settings(), gateway=gateway, session=session, deferrer=deferred, clock=clock, delayer=delayed
    )
    runtime.install(built)
    yield built
    runtime.install(None)
    settings.cache_clear()


FROZEN_NOW = datetime(2026, 11, 26, 3, 44, 21, 123000, tzinfo=UTC)


@pytest.fixture
def frozen_clock(clock: ManualClock) -> ManualClock:
    """The services' clock, frozen: every action sees the same instant, so time-dependent work (metrics pushes)
    is deterministic."""
    clock.set(FROZEN_NOW)
    return clock


def make_token(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)
