"""Work deferred until after a reply: tasks handed to the deferred function by an asynchronous invocation.

A request's work before its reply is bounded by its own room (docs/protocol.md, delivery). What a request discovers
on the way (connections gone, a user come online, a metrics push it may not make yet) is described
here as a task and handed off; `handlers/deferred.py` carries the tasks out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from shared.protocol.codec import Codec

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

# Lambda accepts 256 KiB per asynchronous invocation. Each gone user may cost a post to every member of its
# company, so a task stays small enough to finish well within the deferred function's timeout.
GONE_PER_TASK = 100


class _Task(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, defer_build=True)


class GoneRecipient(_Task):
    connection_id: str = Field(alias="connectionId")
    room_key: str | None = Field(default=None, alias="roomKey")
    """The membership the 410 was found through: removed even when the connection's record is gone."""
    found_at: datetime = Field(alias="foundAt")
    """When `@connections` answered 410: what the grace for a connection still in its $connect counts from,
    however late (queued, retried) the clean-up runs."""


class ConnectionsGone(_Task):
    """`@connections` answered 410 for these connections: forget them and announce who went offline."""

    kind: Literal["gone"] = "gone"
    recipients: tuple[GoneRecipient, ...]


class UserOnline(_Task):
    """A user's first connection opened: tell the company, unless the user has left again meanwhile."""

    kind: Literal["online"] = "online"
    company_id: str = Field(alias="companyId")
    user_id: str = Field(alias="userId")
    connection_id: str = Field(alias="connectionId")


class MetricsDue(_Task):
    """Figures changed within a second of the last push: push them once that second is over."""

    kind: Literal["metrics"] = "metrics"
    company_id: str = Field(alias="companyId")
    due_ms: int = Field(alias="dueMs")


class SessionOpened(_Task):
    """A Socket.IO connection's $connect is running: post the Engine.IO open packet once it has returned
    (API Gateway answers 410 until then, and the client says nothing before the open packet)."""

    kind: Literal["open"] = "open"
    connection_id: str = Field(alias="connectionId")


class NativeSessionOpened(_Task):
    """A native connection with `recovery=1`: once its $connect has returned, recover the session its query
    named (`session`, `offset`) or start one, and join its rooms (decision 0066)."""

    kind: Literal["native-session"] = "native-session"
    connection_id: str = Field(alias="connectionId")
    identity: dict[str, Any]
    """The authorizer's context, as $connect got it."""
    session: str | None = None
    offset: str | None = None


class Recipient(_Task):
    connection_id: str = Field(alias="connectionId")
    codec: Codec = Codec.NATIVE
    since: int | None = None
    """A session's membership: the journal position from which it hears this room (decision 0065)."""


class RoomBroadcast(_Task):
    """A room past the large-room threshold: split its members into chunks, one worker each (decision 0052)."""

    kind: Literal["room"] = "room"
    company_id: str = Field(alias="companyId")
    room: str
    """The room's name (`conversation:c-1`); its members are read under the company's key."""
    frame: dict[str, Any]
    exclude: str | None = None
    position: int | None = None
    """The event's journal position, when it is recoverable."""
    start_at: str | None = Field(default=None, alias="startAt")
    """The members from this connection id on (in id order): what a split left when a chunk could not be handed on."""


class BroadcastChunk(_Task):
    """Post one event to these members of a room, within the company's and the platform's posts-per-second
    budgets; what a spent budget leaves is queued again, later (decision 0092)."""

    kind: Literal["chunk"] = "chunk"
    company_id: str = Field(alias="companyId")
    room: str
    frame: dict[str, Any]
    recipients: tuple[Recipient, ...]
    position: int | None = None
    requeues: int = 0
    """How many times a spent budget sent these recipients back to the queue: the next wait grows with it."""


AnyTask = (
    ConnectionsGone | UserOnline | MetricsDue | SessionOpened | NativeSessionOpened | RoomBroadcast | BroadcastChunk
)
Task = Annotated[AnyTask, Field(discriminator="kind")]


@cache
def _task_adapter() -> TypeAdapter[Task]:
    # Built on first use, not at import: the union's validator costs every function's cold start otherwise.
    return TypeAdapter[Task](Task)


def parse_task(event: object) -> AnyTask:
    """The task an asynchronous invocation carries; raises pydantic's ValidationError if it is none."""
    return _task_adapter().validate_python(event)


def gone_tasks(recipients: Sequence[GoneRecipient]) -> list[ConnectionsGone]:
    return [
        ConnectionsGone(recipients=tuple(recipients[start : start + GONE_PER_TASK]))
        for start in range(0, len(recipients), GONE_PER_TASK)
    ]


class Deferrer(Protocol):
    def defer(self, task: AnyTask) -> None: ...


class LambdaDeferrer:
    """Hands a task to the deferred function with an asynchronous invocation: Lambda queues it, retries it
    twice on failure, and the caller does not wait for it."""

    def __init__(self, client: LambdaClient, function_name: str) -> None:
        self._client = client
        self._function_name = function_name

    def defer(self, task: AnyTask) -> None:
        self._client.invoke(
            FunctionName=self._function_name,
            InvocationType="Event",
            Payload=json.dumps(task.model_dump(by_alias=True, mode="json")).encode("utf-8"),
        )
