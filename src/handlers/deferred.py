"""Work handed off until after a reply (shared.delivery.deferred): a Socket.IO open packet, connections found gone,
a user come online, a trailing metrics push. Invoked asynchronously; Lambda retries a failed invocation twice.
Large rooms' broadcasts have a queue and a function of their own (handlers/broadcasts.py, decision 0092)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from shared.delivery.deferred import (
    BroadcastChunk,
    ConnectionsGone,
    MetricsDue,
    NativeSessionOpened,
    RoomBroadcast,
    SessionOpened,
    UserOnline,
    parse_task,
)
from shared.delivery.management_api import Delivery
from shared.domain.sessions import Greeting
from shared.observability import MetricUnit, instrumented, logger, metrics
from shared.protocol.identity import identity_from_authorizer
from shared.protocol.recovery import NATIVE_SESSION, Claim, parse_offset
from shared.stores.analytics import PUSH_INTERVAL_MS
from shared.wiring.loading import loaded
from shared.wiring.services import Services, services

# A trailing push waits for the second after the last push; pushes by others can push it back a little.
TRAILING_ATTEMPTS = 3


@instrumented()
def handler(event: dict[str, Any], _context: LambdaContext) -> dict[str, Any]:
    try:
        task = parse_task(event)
    except ValidationError:
        # Retrying cannot make it valid: drop it, loudly.
        logger.error("not a deferred task", extra={"keys": sorted(event)[:10]})
        return {"done": False}
    runtime = services()
    logger.append_keys(task=task.kind)
    if isinstance(task, SessionOpened):
        _open_session(runtime, task.connection_id)
    elif isinstance(task, NativeSessionOpened):
        _open_native_session(runtime, task)
    elif isinstance(task, ConnectionsGone):
        forgotten = runtime.presence.forget_gone(task.recipients, runtime.clock.now())
        metrics.add_metric(name="GoneConnectionsForgotten", unit=MetricUnit.Count, value=forgotten)
    elif isinstance(task, UserOnline):
        runtime.presence.announce_online(task)
    elif isinstance(task, RoomBroadcast | BroadcastChunk):
        # Handed off before broadcasts had a queue of their own (decision 0092): they go there now.
        runtime.deferrer.defer(task)
    else:
        _push_trailing(runtime, task)
    return {"done": True}


def _open_session(runtime: Services, connection_id: str) -> None:
    # The Socket.IO codec only for this task: clean-up, presence and metrics tasks start without it.
    from shared.wiring.socketio_app import post_open_packet

    def closed() -> bool:
        return runtime.connections.get(connection_id) is None

    if post_open_packet(runtime.hub, connection_id, runtime.config, closed) is Delivery.DELIVERED:
        runtime.connections.start_session(connection_id, runtime.clock.now())


def _open_native_session(runtime: Services, task: NativeSessionOpened) -> None:
    identity = identity_from_authorizer(task.identity)
    now = runtime.clock.now()
    claim = Claim(identity, NATIVE_SESSION, parse_offset(task.offset), identity.sessions_ended_at)
    runtime.sessions.open(
        task.connection_id,
        claim,
        pid_text=task.session,
        fresh_sid=task.connection_id,
        greeting=Greeting(connected=None, connecting=True),
        now=now,
    )


def _push_trailing(runtime: Services, task: MetricsDue) -> None:
    wait_until_ms = task.due_ms
    for _ in range(TRAILING_ATTEMPTS):
        runtime.clock.sleep(max(0.0, wait_until_ms / 1000 - runtime.clock.now().timestamp()))
        now = runtime.clock.now()
        if runtime.analytics.push_trailing(task.company_id, now):
            return
        wait_until_ms = int(now.timestamp() * 1000) + PUSH_INTERVAL_MS
    logger.info("trailing push left to the next change or the minute refresh", extra={"company_id": task.company_id})


# Last: everything this function imports is loaded (shared.wiring.loading).
loaded()
