"""Every 15 minutes: forget connections whose $disconnect never arrived (their records also expire by TTL)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.observability import MetricUnit, instrumented, metrics
from shared.wiring.loading import loaded
from shared.wiring.services import services


@instrumented()
def handler(_event: dict[str, Any], _context: LambdaContext) -> dict[str, int]:
    runtime = services()
    swept = runtime.presence.sweep(runtime.clock.now())
    metrics.add_metric(name="StaleConnectionsSwept", unit=MetricUnit.Count, value=swept)
    return {"swept": swept}


# Last: everything this function imports is loaded (shared.wiring.loading).
loaded()
