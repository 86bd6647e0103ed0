"""EventBridge target: what backend services publish (Emit, Notify, MessageReceived, CampaignStarted,
ContactTagged, LeadAssigned, Disconnect, RevokeTokens), validated, checked against the event's company
(`shared.routes.publishing`), and applied once per event id."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import MetricUnit, instrumented, logger, metrics
from shared.protocol.errors import RoomcastError
from shared.routes.publishing import Dropped, apply, validated
from shared.wiring.loading import loaded
from shared.wiring.services import Services, services

# EventBridge retries for up to 24 hours; a redelivery within two days is recognised.
IDEMPOTENCY = IdempotencyConfig(event_key_jmespath="id", expires_after_seconds=2 * 24 * 3600)


@instrumented(correlation_id_path="id")
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    return receive(event, context, services())


def receive(event: dict[str, Any], context: LambdaContext, runtime: Services) -> dict[str, str]:
    parsed = EventBridgeEvent(event)
    logger.append_keys(detail_type=parsed.detail_type, source=parsed.source)
    try:
        detail = validated(parsed)
        IDEMPOTENCY.register_lambda_context(context)
        once = idempotent_function(
            data_keyword_argument="event", persistence_store=runtime.idempotency, config=IDEMPOTENCY
        )(apply)
        result: dict[str, str] = once(event=event, detail=detail, runtime=runtime)
    except (Dropped, RoomcastError) as refusal:
        logger.warning("event dropped", extra={"reason": str(refusal)})
        metrics.add_metric(name="EventsDropped", unit=MetricUnit.Count, value=1)
        return {"status": "dropped"}
    metrics.add_metric(name="EventsApplied", unit=MetricUnit.Count, value=1)
    return result


# Last: everything this function imports is loaded (shared.wiring.loading).
loaded()
