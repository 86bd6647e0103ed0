"""What tests and bench share to drive roomcast: the local stack in a process of its own; peers whose frames run
the real handlers in this process; a recording `@connections` and a deferrer that queues; the API Gateway and
EventBridge events the handlers are given; and the development secret.

In-process peers need the handlers' services installed (`shared.wiring.services.install`) with a
RecordingGateway and a QueuedDeferrer, and the tables they name (tests/conftest.py and bench/calls.py do both)."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from roomcast_local.environment import DEVELOPMENT_SECRET, function_arns
from roomcast_local.eventbridge import matches, rules
from roomcast_local.invoke import LocalContext, load_handler
from roomcast_local.template import WebSocketApi, load_template, resources, websocket_api
from shared.delivery.broadcasts import is_broadcast, requeue_delay
from shared.delivery.deferred import AnyTask, BroadcastChunk
from shared.delivery.delayed import DelayedTask
from shared.delivery.heartbeat import HeartbeatShard
from shared.delivery.management_api import Delivery
from shared.protocol.clock import Clock
from shared.wiring import services as runtime

__all__ = ["DEVELOPMENT_SECRET"]

EVENTS = Path(__file__).resolve().parents[2] / "events"
DEFERRED_HANDLER = "handlers.deferred.handler"
DELAYED_HANDLER = "handlers.delayed.handler"
HEARTBEAT_HANDLER = "handlers.heartbeat.handler"
BROADCAST_HANDLER = "handlers.broadcasts.handler"

# ---- the local stack, as a developer runs it: `roomcast serve` in its own process, on a free port ----

_READY = re.compile(r"ready on (ws://[\d.]+:\d+)")


@dataclass
class RunningStack:
    process: subprocess.Popen[str]
    ws_url: str
    output: list[str] = field(default_factory=list)

    @property
    def http_url(self) -> str:
        return self.ws_url.replace("ws://", "http://")

    @property
    def management_url(self) -> str:
        """@connections of the stack's stage (`roomcast serve` defaults to `local`)."""
        return f"{self.http_url}/local"

    def log(self) -> str:
        return "".join(self.output)


def start_stack(
    *arguments: str, dynamodb: str | None = None, environment: dict[str, str] | None = None
) -> RunningStack:
    """`roomcast serve --port 0 *arguments`, once it says it is ready. Its DynamoDB is its own (moto), or
    `dynamodb`, an endpoint that outlives the stack (a restart keeps the data); the caller's AWS endpoints
    are not passed on. `environment`: variables set for it as a developer would before `make run`
    (PRESENCE_GRACE_SECONDS=2)."""
    overrides = environment or {}
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AWS_ENDPOINT_URL")}
    environment.update(overrides)
    environment.pop("DYNAMODB_ENDPOINT", None)
    if dynamodb is not None:
        environment["DYNAMODB_ENDPOINT"] = dynamodb
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", "roomcast_local", "serve", "--port", "0", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
    )
    assert process.stdout is not None
    output: list[str] = []
    for line in process.stdout:
        output.append(line)
        found = _READY.search(line)
        if found:
            stack = RunningStack(process, found.group(1), output)
            threading.Thread(target=lambda: output.extend(process.stdout or []), daemon=True).start()
            return stack
    raise RuntimeError("the local stack did not start:\n" + "".join(output))


def stop_stack(stack: RunningStack) -> int:
    """Ctrl-C, as a developer stops it: every connection closes and its $disconnect runs."""
    stack.process.send_signal(signal.SIGINT)
    return stack.process.wait(timeout=30)


# ---- stand-ins ----


class RecordingGateway:
    """@connections that records every post, and can play gone or failing peers."""

    def __init__(self) -> None:
        self.frames: dict[str, list[dict[str, Any]]] = defaultdict(list)
        # What Socket.IO connections were sent: Engine.IO / Socket.IO text, not JSON objects.
        self.texts: dict[str, list[str]] = defaultdict(list)
        self.gone: set[str] = set()
        self.failing: set[str] = set()
        self.closed: list[str] = []
        self.calls = 0
        self._lock = threading.Lock()

    def post_many(self, connection_ids: Sequence[str], data: bytes) -> list[Delivery]:
        return [self.post(connection_id, data) for connection_id in connection_ids]

    def post(self, connection_id: str, data: bytes) -> Delivery:
        with self._lock:
            self.calls += 1
            if connection_id in self.gone:
                return Delivery.GONE
            if connection_id in self.failing:
                return Delivery.FAILED
            text = data.decode("utf-8")
            if text[:1].isdigit():
                self.texts[connection_id].append(text)
            else:
                self.frames[connection_id].append(json.loads(text))
            return Delivery.DELIVERED

    def close(self, connection_id: str) -> None:
        self.closed.append(connection_id)

    def events(self, connection_id: str, name: str | None = None) -> list[dict[str, Any]]:
        return [frame for frame in self.frames[connection_id] if name is None or frame.get("event") == name]

    def clear(self) -> None:
        self.frames.clear()
        self.texts.clear()


class QueuedDeferrer:
    """Keeps handed-off tasks in order. With `auto`, peers run them after each invocation returns, as Lambda
    runs an asynchronous invocation after the caller's reply."""

    def __init__(self) -> None:
        self.tasks: list[AnyTask] = []
        self.auto = True
        self.clock: Clock | None = None
        """The clock a chunk sent back for its budget waits its delay on (`run_deferred`)."""
        self._lock = threading.Lock()

    def defer(self, task: AnyTask) -> None:
        with self._lock:
            self.tasks.append(task)

    def take(self) -> list[AnyTask]:
        with self._lock:
            taken, self.tasks = self.tasks, []
        return taken


class ManualClock:
    """The services' clock for tests and bench (`build_services(clock=...)`): the system's time until `set`, moved
    on by `advance`; `sleep` moves it on at once instead of waiting."""

    def __init__(self) -> None:
        self._set: datetime | None = None
        self._step = timedelta()
        self._ahead = timedelta()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            if self._set is None:
                return datetime.now(UTC) + self._ahead
            reading = self._set + self._ahead
            self._ahead += self._step
            return reading

    def set(self, at: datetime, step: float = 0.0) -> None:
        """From now on the clock reads `at`, moved on by `step` seconds after each reading (0: frozen)."""
        with self._lock:
            self._set, self._step, self._ahead = at, timedelta(seconds=step), timedelta()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._ahead += timedelta(seconds=seconds)

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)


class QueuedShards:
    """Keeps the heartbeat shards a scheduled run started, until `run_heartbeat` pings them."""

    def __init__(self) -> None:
        self.shards: list[HeartbeatShard] = []
        self._lock = threading.Lock()

    def start(self, shard: HeartbeatShard) -> None:
        with self._lock:
            self.shards.append(shard)

    def take(self) -> list[HeartbeatShard]:
        with self._lock:
            taken, self.shards = self.shards, []
        return taken


class QueuedDelayer:
    """Keeps delayed tasks, with their delays, until a test says their time has come (`run_delayed`)."""

    def __init__(self) -> None:
        self.tasks: list[tuple[DelayedTask, int]] = []
        self._lock = threading.Lock()

    def delay(self, task: DelayedTask, seconds: int) -> None:
        with self._lock:
            self.tasks.append((task, seconds))

    def take(self) -> list[tuple[DelayedTask, int]]:
        with self._lock:
            taken, self.tasks = self.tasks, []
        return taken


def sqs_event(bodies: Sequence[str]) -> dict[str, Any]:
    """Messages of a queue as Lambda's SQS event source hands them to a function (events/queue-delayed.json)."""
    event = copy.deepcopy(load_event("queue-delayed"))
    (template,) = event["Records"]
    event["Records"] = [{**template, "messageId": str(uuid.uuid4()), "body": body} for body in bodies]
    return event


# ---- events, shaped as API Gateway and EventBridge give them to Lambda (events/*.json) ----


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return event


def identity_context(user_id: str, company_id: str, exp: int | None = None) -> dict[str, Any]:
    context: dict[str, Any] = {"principalId": user_id, "userId": user_id, "companyId": company_id}
    if exp is not None:
        context["exp"] = exp
    return context


def message_event(
    connection_id: str, user_id: str, company_id: str, body: str | dict[str, Any], exp: int | None = None
) -> dict[str, Any]:
    """A MESSAGE event shaped like events/ping.json, for any connection and body."""
    event = copy.deepcopy(load_event("ping"))
    text = body if isinstance(body, str) else json.dumps(body)
    if isinstance(body, dict) and isinstance(body.get("action"), str):
        event["requestContext"]["routeKey"] = body["action"]
    else:
        event["requestContext"]["routeKey"] = "$default"
    event["requestContext"]["connectionId"] = connection_id
    event["requestContext"]["authorizer"] = identity_context(user_id, company_id, exp)
    event["body"] = text
    return event


def lifecycle_event(
    kind: str, connection_id: str, user_id: str, company_id: str, exp: int | None = None
) -> dict[str, Any]:
    event = copy.deepcopy(load_event(kind))
    event["requestContext"]["connectionId"] = connection_id
    event["requestContext"]["authorizer"] = identity_context(user_id, company_id, exp)
    return event


def bus_event(detail_type: str, detail: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    """An EventBridge event as the bus delivers it to a target."""
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": "crm.test",
        "account": "123456789012",
        "time": "2026-11-26T03:44:21Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


# ---- handlers run in this process, routed as template.yaml routes them ----


@cache
def _template() -> dict[str, Any]:
    """template.yaml, read and expanded once per process: every in-process delivery and publish routes by it."""
    return load_template()


@cache
def api() -> WebSocketApi:
    return websocket_api(_template())


@cache
def _functions_by_handler() -> dict[str, tuple[str, str]]:
    """Handler path -> (function name, ARN), from the template."""
    template = _template()
    arns = function_arns(template)
    return {
        str(body["Properties"]["Handler"]): (name, arns[name])
        for name, body in resources(template, "AWS::Serverless::Function").items()
    }


def invoke(handler: str, event: dict[str, Any]) -> Any:
    """Run the template's function whose handler is `handler`, with the context Lambda would give it."""
    function, arn = _functions_by_handler()[handler]
    return load_handler(handler)(event, LocalContext(function, arn))


def deferrer() -> QueuedDeferrer:
    queued = runtime.services().deferrer
    assert isinstance(queued, QueuedDeferrer)
    return queued


def run_deferred() -> int:
    """Run queued tasks, and the tasks they hand off in turn, until none is left; returns how many ran. A large
    room's broadcast and its chunks are messages of the broadcast queue, each run by the broadcast function; a
    chunk sent back for its budget first waits its delay on the deferrer's clock, when it has one."""
    ran = 0
    queued = deferrer()
    while tasks := queued.take():
        for task in tasks:
            if is_broadcast(task):
                if isinstance(task, BroadcastChunk) and task.requeues and queued.clock is not None:
                    queued.clock.sleep(requeue_delay(task.requeues))
                body = json.dumps(task.model_dump(by_alias=True, mode="json"))
                invoke(BROADCAST_HANDLER, sqs_event([body]))
            else:
                invoke(DEFERRED_HANDLER, task.model_dump(by_alias=True, mode="json"))
            ran += 1
    return ran


def run_heartbeat() -> int:
    """The heartbeat's scheduled run, then each shard it started, as Lambda runs them; returns how many
    connections were pinged."""
    invoke(HEARTBEAT_HANDLER, load_event("schedule-heartbeat"))
    queued = runtime.services().shard_starter
    assert isinstance(queued, QueuedShards)
    return sum(int(invoke(HEARTBEAT_HANDLER, shard.model_dump())["pinged"]) for shard in queued.take())


def delayer() -> QueuedDelayer:
    queued = runtime.services().delayer
    assert isinstance(queued, QueuedDelayer)
    return queued


def run_delayed() -> dict[str, Any]:
    """Receive every delayed task now, as the delay queue does once their delays are over, in one batch; then
    what they handed off. Returns the delayed function's answer."""
    bodies = [json.dumps(task.model_dump(by_alias=True, mode="json")) for task, _seconds in delayer().take()]
    result: dict[str, Any] = invoke(DELAYED_HANDLER, sqs_event(bodies))
    if deferrer().auto:
        run_deferred()
    return result


def deliver(event: dict[str, Any]) -> dict[str, Any] | None:
    """Invoke the function the event's route key maps to; return the frame a two-way route sends back.
    Then run what it handed off, as Lambda would after the reply."""
    route_key = event["requestContext"]["routeKey"]
    response = invoke(api().handler_of(route_key), event)
    assert response["statusCode"] == 200, response
    if deferrer().auto:
        run_deferred()
    body = response.get("body")
    return None if body is None else dict(json.loads(body))


def publish(detail_type: str, detail: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    """Deliver an event to the function the template's rules route its detail-type to."""
    event = bus_event(detail_type, detail, event_id)
    targets = {rule.function for rule in rules(_template()) if matches(rule.pattern, event)}
    assert len(targets) <= 1, targets
    if not targets:
        return {"status": "unrouted"}
    result: dict[str, Any] = invoke(api().handlers[targets.pop()], event)
    if deferrer().auto:
        run_deferred()
    return result


class Peer:
    """One WebSocket connection of one user, its frames run by the handlers in this process."""

    def __init__(
        self, gateway: RecordingGateway, connection_id: str, user_id: str, company_id: str, exp: int | None = None
    ) -> None:
        self.gateway = gateway
        self.connection_id = connection_id
        self.user_id = user_id
        self.company_id = company_id
        self.exp = exp

    def connect(self) -> Peer:
        deliver(lifecycle_event("connect", self.connection_id, self.user_id, self.company_id, self.exp))
        return self

    def disconnect(self) -> None:
        deliver(lifecycle_event("disconnect", self.connection_id, self.user_id, self.company_id, self.exp))

    def raw(self, body: str) -> dict[str, Any] | None:
        event = message_event(self.connection_id, self.user_id, self.company_id, body, self.exp)
        event["requestContext"]["routeKey"] = api().select(body)
        return deliver(event)

    def act(self, action: str, data: dict[str, Any] | None = None, ack_id: str | None = "1") -> dict[str, Any]:
        """Send an action and return its one reply frame."""
        frame: dict[str, Any] = {"action": action}
        if data is not None:
            frame["data"] = data
        if ack_id is not None:
            frame["ackId"] = ack_id
        reply = self.raw(json.dumps(frame, ensure_ascii=False))
        assert reply is not None, f"{action} sent no reply"
        return reply

    def ok(self, action: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send an action with an ackId and return the ack's data, failing on an error ack."""
        reply = self.act(action, data, ack_id="ok")
        assert (reply["event"], reply["ok"]) == ("ack", True), reply
        result: dict[str, Any] = reply["data"]
        return result

    def error(self, action: str, data: dict[str, Any] | None = None) -> str:
        """Send an action that must fail; return its error code."""
        reply = self.act(action, data, ack_id="err")
        assert (reply["event"], reply["ok"]) == ("ack", False), reply
        code: str = reply["error"]["code"]
        return code

    def received(self, event: str | None = None) -> list[dict[str, Any]]:
        return self.gateway.events(self.connection_id, event)


class SocketIoPeer(Peer):
    """A connection that speaks Socket.IO: its handshake query carried EIO=4, so the authorizer's context says so."""

    def _socketio(self, event: dict[str, Any]) -> dict[str, Any]:
        event["requestContext"]["authorizer"]["codec"] = "socketio"
        return event

    def connect(self) -> SocketIoPeer:
        deliver(self._socketio(lifecycle_event("connect", self.connection_id, self.user_id, self.company_id, self.exp)))
        return self

    def disconnect(self) -> None:
        deliver(
            self._socketio(lifecycle_event("disconnect", self.connection_id, self.user_id, self.company_id, self.exp))
        )

    def send(self, text: str) -> str | None:
        """One Socket.IO message (API Gateway routes it to $default, not being a JSON object); the route's answer."""
        event = self._socketio(message_event(self.connection_id, self.user_id, self.company_id, text, self.exp))
        event["requestContext"]["routeKey"] = api().select(text)
        response = invoke(api().handler_of(event["requestContext"]["routeKey"]), event)
        assert response["statusCode"] == 200, response
        if deferrer().auto:
            run_deferred()
        body = response.get("body")
        return None if body is None else str(body)

    def pushed(self) -> list[str]:
        return self.gateway.texts[self.connection_id]
