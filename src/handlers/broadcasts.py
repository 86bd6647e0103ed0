"""Large rooms' broadcasts (shared.delivery.broadcasts): the broadcast queue's messages, in batches, at most
`BroadcastConcurrency` executions at once. A room's split hands its chunks back to the queue; a chunk posts to
its members within its company's and the platform's budgets, and sends what a spent budget leaves back to the
queue, later. A message that fails is reported alone (ReportBatchItemFailures) and received again, up to the
redrive policy, then dead-lettered; one that can never be a broadcast is dropped, loudly (decision 0092)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from shared.delivery.broadcasts import parse_broadcast
from shared.delivery.deferred import RoomBroadcast
from shared.observability import MetricUnit, instrumented, logger, metrics
from shared.wiring.loading import loaded
from shared.wiring.services import services


@instrumented()
def handler(event: dict[str, Any], _context: LambdaContext) -> dict[str, list[dict[str, str]]]:
    runtime = services()
    failures: list[dict[str, str]] = []
    requeued = 0
    for record in event.get("Records", []):
        message_id = str(record.get("messageId", ""))
        try:
            task = parse_broadcast(str(record.get("body", "")))
        except (ValidationError, ValueError):
            logger.error("not a broadcast", extra={"message_id": message_id})
            metrics.add_metric(name="BroadcastsDropped", unit=MetricUnit.Count, value=1)
            continue
        try:
            if isinstance(task, RoomBroadcast):
                chunks = runtime.large_rooms.split(task)
                metrics.add_metric(name="BroadcastChunks", unit=MetricUnit.Count, value=chunks)
            else:
                requeued += runtime.large_rooms.post(task).requeued
        except Exception:
            logger.exception("broadcast failed", extra={"message_id": message_id, "task": task.kind})
            failures.append({"itemIdentifier": message_id})
    if requeued:
        metrics.add_metric(name="BroadcastRecipientsRequeued", unit=MetricUnit.Count, value=requeued)
    return {"batchItemFailures": failures}


# Last: everything this function imports is loaded (shared.wiring.loading).
loaded()
