"""Large rooms' broadcasts through a queue of their own (decision 0092): a room's split and its chunks are
messages of the broadcast queue, whose event source runs at most `BroadcastConcurrency` executions of the
broadcast function, whatever one company sends. A chunk that finds its company's (or the platform's) budget
spent is sent back to the queue with a delay instead of sleeping in its execution, so waiting for the budget
holds no execution at all. Every other task still goes to the deferred function (shared.delivery.deferred)."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.delivery.deferred import AnyTask, BroadcastChunk, Deferrer, RoomBroadcast, parse_task
from shared.protocol.rooms import parse_room

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

# The longest wait of a chunk sent back for its budget: a company past its budget for a minute is in a storm,
# and its chunks then come back about once a minute each, not once a second.
MAX_REQUEUE_DELAY_SECONDS = 60

BroadcastTask = RoomBroadcast | BroadcastChunk


def is_broadcast(task: AnyTask) -> bool:
    return isinstance(task, RoomBroadcast | BroadcastChunk)


def requeue_delay(requeues: int) -> int:
    """Seconds a chunk sent back for the `requeues`-th time waits: 1, 2, 4 ... up to a minute, with a jitter of
    up to half of it so that a storm's chunks spread over the seconds rather than all come back at once."""
    if requeues <= 0:
        return 0
    base: int = min(MAX_REQUEUE_DELAY_SECONDS, 1 << min(requeues - 1, 6))
    return min(MAX_REQUEUE_DELAY_SECONDS, base + random.randint(0, base // 2))  # noqa: S311 (jitter, not a secret)


def parse_broadcast(body: str) -> BroadcastTask:
    """The task a broadcast queue message carries; raises pydantic's ValidationError (or ValueError) if it is none,
    a room's name included: such a message would fail each time it is received, and be dead-lettered."""
    try:
        decoded = json.loads(body)
    except RecursionError as error:  # nested past the parser's depth: no ValueError of its own
        raise ValueError("a body nested too deep") from error
    task = parse_task(decoded)
    if not isinstance(task, RoomBroadcast | BroadcastChunk):
        raise ValueError(f"a {task.kind} task is not a broadcast")
    if parse_room(task.room) is None:
        raise ValueError(f"a broadcast to no room ({task.room!r})")
    return task


class QueueDeferrer:
    """Broadcasts to the broadcast queue (a chunk sent back waits `requeue_delay`), every other task to `other`."""

    def __init__(self, client: Callable[[], SQSClient], queue_url: str, other: Deferrer) -> None:
        """`client`: gives the SQS client, made when the first broadcast is sent."""
        self._client = client
        self._queue_url = queue_url
        self._other = other

    def defer(self, task: AnyTask) -> None:
        if not isinstance(task, RoomBroadcast | BroadcastChunk):
            self._other.defer(task)
            return
        if not self._queue_url:
            raise RuntimeError("set BROADCAST_QUEUE_URL to send large rooms' broadcasts")
        delay = requeue_delay(task.requeues) if isinstance(task, BroadcastChunk) else 0
        self._client().send_message(QueueUrl=self._queue_url, MessageBody=message_body(task), DelaySeconds=delay)


# What SQS refuses in a message (its allowed characters are XML's) that JSON does not escape by itself.
_REFUSED_BY_SQS = re.compile(r"[\ud800-\udfff\ufffe\uffff]")


def message_body(task: BroadcastTask) -> str:
    """A broadcast as a queue message, its text as the event's own size counts it: in UTF-8, not escaped to ASCII,
    which takes up to three times the bytes (the queue takes 1 MiB, the template says so; SQS bills each 64 KiB).
    The few characters SQS refuses are escaped, as JSON lets any character be."""
    text = json.dumps(task.model_dump(by_alias=True, mode="json"), ensure_ascii=False, separators=(",", ":"))
    return _REFUSED_BY_SQS.sub(lambda found: f"\\u{ord(found.group()):04x}", text)
