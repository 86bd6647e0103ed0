"""The /analytics namespace's function, and the minute's push of today's figures to dashboard viewers."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import MetricUnit, instrumented, metrics
from shared.protocol.websocket import WebSocketEvent
from shared.routes.analytics import analytics
from shared.wiring.entry import LambdaResponse, websocket_entry
from shared.wiring.loading import loaded
from shared.wiring.services import services


@websocket_entry
def handler(event: dict[str, Any], _context: LambdaContext) -> LambdaResponse:
    return analytics.handle(WebSocketEvent.of(event), services())


@instrumented()
def push_figures(_event: dict[str, Any], _context: LambdaContext) -> dict[str, int]:
    """Every minute: today's figures to every company with dashboard viewers, changed or not."""
    runtime = services()
    pushed = runtime.analytics.refresh_all(runtime.clock.now())
    metrics.add_metric(name="AnalyticsRefreshed", unit=MetricUnit.Count, value=pushed)
    return {"companies": pushed}


# Last: everything this function imports is loaded (shared.wiring.loading).
loaded()
