"""SQS for the local stack, as far as the template uses it: the queues it declares, the JSON protocol a boto3
`sqs` client speaks (`POST /`, `X-Amz-Target: AmazonSQS.<Operation>`) for SendMessage, SendMessageBatch,
ReceiveMessage, DeleteMessage and GetQueueUrl, with DelaySeconds and visibility timeouts, and the Lambda event
source of SAM `SQS` events: a poller per source that hands the function batches of up to `BatchSize` visible
messages, at most `ScalingConfig.MaximumConcurrency` batches at once, deletes what it handled and lets what it
reported failed (ReportBatchItemFailures), or all of a batch it raised on, be received again once the
visibility timeout is over; past the redrive policy's maxReceiveCount a message moves to its dead-letter queue.
https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/Welcome.html"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from roomcast_local.callers import Callers
from roomcast_local.environment import ACCOUNT, REGION, queue_arn
from roomcast_local.errors import aws_error
from roomcast_local.template import resources
from roomcast_local.workers import Lambda

JSON_TYPE = "application/x-amz-json-1.0"
TARGET_PREFIX = "AmazonSQS."
MAX_DELAY_SECONDS = 900
POLL_SECONDS = 0.05
log = logging.getLogger("stack.sqs")


@dataclass(frozen=True)
class QueueDefinition:
    name: str
    delay_seconds: int = 0
    visibility_timeout: int = 30
    dead_letter: str | None = None
    max_receive_count: int | None = None


@dataclass(frozen=True)
class EventSource:
    name: str
    function: str
    queue: str
    batch_size: int = 10
    report_failures: bool = False
    maximum_concurrency: int | None = None
    """`ScalingConfig.MaximumConcurrency`: the most batches of this source its function runs at once."""


def _logical(reference: Any) -> str | None:
    """The queue a `!GetAtt Q.Arn` or `!Ref Q` names."""
    if isinstance(reference, dict) and "Fn::GetAtt" in reference:
        return str(reference["Fn::GetAtt"][0])
    if isinstance(reference, dict) and "Ref" in reference:
        return str(reference["Ref"])
    return None


def queue_definitions(template: dict[str, Any]) -> list[QueueDefinition]:
    """The template's `AWS::SQS::Queue`s; a queue's name locally is its logical id."""
    found = []
    for name, body in resources(template, "AWS::SQS::Queue").items():
        properties = body.get("Properties", {})
        redrive = properties.get("RedrivePolicy") or {}
        found.append(
            QueueDefinition(
                name=name,
                delay_seconds=int(properties.get("DelaySeconds", 0)),
                visibility_timeout=int(properties.get("VisibilityTimeout", 30)),
                dead_letter=_logical(redrive.get("deadLetterTargetArn")),
                max_receive_count=int(redrive["maxReceiveCount"]) if "maxReceiveCount" in redrive else None,
            )
        )
    return found


def _maximum_concurrency(scaling: Any, parameters: dict[str, Any]) -> int | None:
    """A ScalingConfig's MaximumConcurrency, a number or a `!Ref` to a parameter (its default)."""
    value: Any = (scaling or {}).get("MaximumConcurrency")
    if isinstance(value, dict) and "Ref" in value:
        value = parameters.get(str(value["Ref"]), {}).get("Default")
    return None if value is None else int(str(value))


def event_sources(template: dict[str, Any]) -> list[EventSource]:
    """SAM `SQS` events of functions: each is a poller handing batches of its queue to the function, at most
    its MaximumConcurrency batches at once."""
    parameters: dict[str, Any] = template.get("Parameters", {})
    found = []
    for function, body in resources(template, "AWS::Serverless::Function").items():
        for name, event in body["Properties"].get("Events", {}).items():
            if event["Type"] != "SQS":
                continue
            properties = event["Properties"]
            queue = _logical(properties["Queue"])
            if queue is None:
                continue
            found.append(
                EventSource(
                    name=f"{function}.{name}",
                    function=function,
                    queue=queue,
                    batch_size=int(properties.get("BatchSize", 10)),
                    report_failures="ReportBatchItemFailures" in properties.get("FunctionResponseTypes", []),
                    maximum_concurrency=_maximum_concurrency(properties.get("ScalingConfig"), parameters),
                )
            )
    return found


@dataclass
class Message:
    message_id: str
    body: str
    sent_at: float
    visible_at: float
    receive_count: int = 0
    receipt_handle: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)

    def record(self, queue: str) -> dict[str, Any]:
        """The message as Lambda's SQS event source gives it to the function."""
        return {
            "messageId": self.message_id,
            "receiptHandle": self.receipt_handle,
            "body": self.body,
            "attributes": {
                "ApproximateReceiveCount": str(self.receive_count),
                "SentTimestamp": str(int(self.sent_at * 1000)),
                "ApproximateFirstReceiveTimestamp": str(int(time.time() * 1000)),
            },
            "messageAttributes": self.attributes,
            "md5OfBody": _md5(self.body),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn(queue),
            "awsRegion": REGION,
        }


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


class QueueError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class Queue:
    def __init__(self, definition: QueueDefinition, clock: Callable[[], float] = time.monotonic) -> None:
        self.definition = definition
        self._clock = clock
        self._messages: dict[str, Message] = {}

    def send(self, body: str, delay_seconds: int | None, attributes: dict[str, Any] | None = None) -> Message:
        delay = self.definition.delay_seconds if delay_seconds is None else delay_seconds
        if not 0 <= delay <= MAX_DELAY_SECONDS:
            raise QueueError("InvalidParameterValue", f"DelaySeconds must be 0 to {MAX_DELAY_SECONDS}")
        now = self._clock()
        message = Message(str(uuid.uuid4()), body, time.time(), now + delay, attributes=attributes or {})
        self._messages[message.message_id] = message
        return message

    def receive(self, limit: int, visibility_timeout: int | None = None) -> list[Message]:
        """Up to `limit` visible messages, oldest first, each hidden for the visibility timeout."""
        now = self._clock()
        hidden_for = self.definition.visibility_timeout if visibility_timeout is None else visibility_timeout
        visible = sorted(
            (message for message in self._messages.values() if message.visible_at <= now), key=lambda m: m.sent_at
        )[:limit]
        for message in visible:
            message.receive_count += 1
            message.receipt_handle = f"{message.message_id}#{uuid.uuid4().hex}"
            message.visible_at = now + hidden_for
        return visible

    def delete(self, receipt_handle: str) -> None:
        message_id = receipt_handle.split("#", 1)[0]
        message = self._messages.get(message_id)
        if message is not None and message.receipt_handle == receipt_handle:
            del self._messages[message_id]

    def exhausted(self) -> list[Message]:
        """Messages received as often as the redrive policy allows and visible again: taken out of this queue."""
        limit = self.definition.max_receive_count
        if limit is None:
            return []
        now = self._clock()
        done = [m for m in self._messages.values() if m.receive_count >= limit and m.visible_at <= now]
        for message in done:
            del self._messages[message.message_id]
        return done

    def __len__(self) -> int:
        return len(self._messages)


def queue_name_of(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


class SqsApi:
    """The queues, their JSON API, and the pollers of their event sources."""

    def __init__(
        self,
        definitions: list[QueueDefinition],
        sources: list[EventSource],
        functions: Lambda,
        callers: Callers,
        spawn: Callable[[Awaitable[Any]], None],
        *,
        base_url: str,
    ) -> None:
        self.queues = {definition.name: Queue(definition) for definition in definitions}
        self.sources = sources
        self.functions = functions
        self.callers = callers
        self.spawn = spawn
        self.base_url = base_url.rstrip("/")
        self._pollers: list[asyncio.Future[None]] = []
        self.running: dict[str, int] = dict.fromkeys((source.name for source in sources), 0)
        """Batches each source's function is running now."""

    def url_of(self, name: str) -> str:
        return f"{self.base_url}/{ACCOUNT}/{name}"

    def start(self) -> None:
        self._pollers = [asyncio.ensure_future(self._poll(source)) for source in self.sources]

    def stop(self) -> None:
        for poller in self._pollers:
            poller.cancel()

    async def handle(self, request: web.Request, operation: str) -> web.Response:
        try:
            payload = json.loads(await request.read() or b"{}")
            if not isinstance(payload, dict):
                raise QueueError("InvalidParameterValue", "the request must be a JSON object")
            if operation == "GetQueueUrl":
                name = str(payload.get("QueueName", ""))
                self._queue(name)
                return self._answer({"QueueUrl": self.url_of(name)})
            queue = self._queue(queue_name_of(str(payload.get("QueueUrl", ""))))
            action = f"sqs:{operation}" if operation != "SendMessageBatch" else "sqs:SendMessage"
            _caller, refusal = await self.callers.check(request, "sqs", action, queue_arn(queue.definition.name))
            if refusal is not None:
                return refusal
            return self._answer(self._perform(queue, operation, payload))
        except QueueError as error:
            return aws_error(error.status, f"com.amazonaws.sqs#{error.code}", error.message, JSON_TYPE)
        except (ValueError, KeyError, TypeError) as error:
            return aws_error(400, "com.amazonaws.sqs#InvalidParameterValue", str(error), JSON_TYPE)

    def _queue(self, name: str) -> Queue:
        queue = self.queues.get(name)
        if queue is None:
            raise QueueError("QueueDoesNotExist", "The specified queue does not exist.")
        return queue

    def _perform(self, queue: Queue, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        if operation == "SendMessage":
            message = queue.send(
                str(payload["MessageBody"]), payload.get("DelaySeconds"), payload.get("MessageAttributes")
            )
            return {"MessageId": message.message_id, "MD5OfMessageBody": _md5(message.body)}
        if operation == "SendMessageBatch":
            successful = []
            for entry in payload["Entries"]:
                message = queue.send(str(entry["MessageBody"]), entry.get("DelaySeconds"))
                successful.append(
                    {"Id": entry["Id"], "MessageId": message.message_id, "MD5OfMessageBody": _md5(message.body)}
                )
            return {"Successful": successful, "Failed": []}
        if operation == "ReceiveMessage":
            messages = queue.receive(int(payload.get("MaxNumberOfMessages", 1)), payload.get("VisibilityTimeout"))
            return {
                "Messages": [
                    {
                        "MessageId": message.message_id,
                        "ReceiptHandle": message.receipt_handle,
                        "Body": message.body,
                        "MD5OfBody": _md5(message.body),
                    }
                    for message in messages
                ]
            }
        if operation == "DeleteMessage":
            queue.delete(str(payload["ReceiptHandle"]))
            return {}
        raise QueueError("UnsupportedOperation", f"{operation} is not served by the local stack")

    @staticmethod
    def _answer(body: dict[str, Any]) -> web.Response:
        return web.Response(body=json.dumps(body), content_type=JSON_TYPE)

    async def _poll(self, source: EventSource) -> None:
        queue = self.queues[source.queue]
        while True:
            self._redrive(queue)
            if source.maximum_concurrency is not None and self.running[source.name] >= source.maximum_concurrency:
                await asyncio.sleep(POLL_SECONDS)  # as Lambda does: the messages wait in the queue, none is throttled
                continue
            batch = queue.receive(source.batch_size)
            if not batch:
                await asyncio.sleep(POLL_SECONDS)
                continue
            # Lambda's event source runs batches side by side: one slow batch holds up no other.
            self.running[source.name] += 1
            self.spawn(self._deliver(source, queue, batch))

    async def _deliver(self, source: EventSource, queue: Queue, batch: list[Message]) -> None:
        try:
            await self._run(source, queue, batch)
        finally:
            self.running[source.name] -= 1

    async def _run(self, source: EventSource, queue: Queue, batch: list[Message]) -> None:
        event = {"Records": [message.record(queue.definition.name) for message in batch]}
        outcome = await self.functions.invoke(source.function, event, "sqs", source.name)
        if outcome.error is not None:
            log.warning("%s failed a batch of %d; it is received again", source.function, len(batch))
            return
        failed: set[str] = set()
        if source.report_failures and isinstance(outcome.result, dict):
            reported = outcome.result.get("batchItemFailures") or []
            named = [item.get("itemIdentifier") if isinstance(item, dict) else None for item in reported]
            batch_ids = {message.message_id for message in batch}
            # As Lambda does: a failure naming no message of the batch (empty, null, a bad key, an unknown id)
            # fails the whole batch.
            if not all(isinstance(name, str) and name in batch_ids for name in named):
                log.warning(
                    "%s reported a failure naming no message of its batch; all %d are received again",
                    source.function,
                    len(batch),
                )
                return
            failed = {str(name) for name in named}
        for message in batch:
            if message.message_id not in failed:
                queue.delete(message.receipt_handle)

    def _redrive(self, queue: Queue) -> None:
        for message in queue.exhausted():
            target = self.queues.get(queue.definition.dead_letter or "")
            log.warning("message %s moved from %s to %s", message.message_id, queue.definition.name, target)
            if target is not None:
                target.send(message.body, 0, message.attributes)
