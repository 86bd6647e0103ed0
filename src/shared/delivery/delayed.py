"""Work due later, not now: tasks handed to a queue that holds each for its delay (SQS `DelaySeconds`) before
the delayed function (`handlers/delayed.py`) carries it out. Nothing sleeps inside a request: the presence
grace's end is such a task (decision 0060), and a large company's presence digest (decision 0089)."""

from __future__ import annotations

import json
from functools import cache
from typing import TYPE_CHECKING, Annotated, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

# The longest delay SQS holds a message for; the template's PresenceGraceSeconds is bounded by it.
MAX_DELAY_SECONDS = 900


class OfflineDue(BaseModel):
    """A user's grace after their last connection closed is over: announce `status:offline`, unless they
    reconnected, or another grace or a kick took over (the grace's token no longer matches)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, defer_build=True)

    kind: Literal["offline"] = "offline"
    company_id: str = Field(alias="companyId")
    user_id: str = Field(alias="userId")
    grace: str
    """The token the close that began the grace wrote (`offlinePending`)."""


class DigestDue(BaseModel):
    """A large company's presence digest is due: announce the changes it holds in one `presence:changed`
    (decision 0089)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, defer_build=True)

    kind: Literal["digest"] = "digest"
    company_id: str = Field(alias="companyId")
    digest: str
    """The digest's token (`presencedigest#{companyId}` / flush)."""


DelayedTask = Annotated[OfflineDue | DigestDue, Field(discriminator="kind")]


@cache
def _task_adapter() -> TypeAdapter[DelayedTask]:
    # Built by the first task, not at import: every function that can delay one imports this module, and only the
    # delayed function reads one (as shared.delivery.deferred's validator, decision 0050).
    return TypeAdapter[DelayedTask](DelayedTask)


def parse_delayed(body: str) -> DelayedTask:
    """The task a queued message carries; raises pydantic's ValidationError if it is none."""
    return _task_adapter().validate_json(body)


class Delayer(Protocol):
    def delay(self, task: DelayedTask, seconds: int) -> None: ...


class SqsDelayer:
    """Sends each task to the delay queue, to be received `seconds` later (at most 15 minutes)."""

    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def delay(self, task: DelayedTask, seconds: int) -> None:
        self._client.send_message(
            QueueUrl=self._queue_url,
            MessageBody=json.dumps(task.model_dump(by_alias=True, mode="json")),
            DelaySeconds=max(0, min(seconds, MAX_DELAY_SECONDS)),
        )
