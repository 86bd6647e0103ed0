"""Work due later (shared.delivery.delayed): graces' ends and presence digests. The delay queue's
messages come in batches, each once its delay is over. A message that fails is reported alone
(ReportBatchItemFailures) and received again; one that can never be a task is dropped, loudly."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from shared.delivery.delayed import DigestDue, parse_delayed
from shared.observability import MetricUnit, instrumented, logger, metrics
from shared.wiring.loading import loaded
from shared.wiring.services import services


@instrumented()
def handler(event: dict[str, Any], _context: LambdaContext) -> dict[str, list[dict[str, str]]]:
    runtime = services()
    failures: list[dict[str, str]] = []
    announced = 0
    digested = 0
    for record in event.get("Records", []):
        message_id = str(record.get("messageId", ""))
        try:
            task = parse_delayed(str(record.get("body", "")))
        except ValidationError:
            logger.error("not a delayed task", extra={"message_id": message_id})
            continue
        try:
            if isinstance(task, DigestDue):
                digested += runtime.presence.flush_digest(task, message_id)
            else:
                announced += runtime.presence.end_grace(task, message_id)
        except Exception:
            logger.exception("delayed task failed", extra={"message_id": message_id, "task": task.kind})
            failures.append({"itemIdentifier": message_id})
    metrics.add_metric(name="OfflineAfterGrace", unit=MetricUnit.Count, value=announced)
    metrics.add_metric(name="PresenceDigestUsers", unit=MetricUnit.Count, value=digested)
    return {"batchItemFailures": failures}


# Last: everything this function imports is loaded (shared.wiring.loading).
loaded()
