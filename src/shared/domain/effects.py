"""Effects that follow a durable write (decision 0021): once something is stored, its writer is told success
whatever fails after it, so an effect's failure is logged and measured, never answered."""

from __future__ import annotations

from collections.abc import Callable

from shared.observability import MetricUnit, logger, metrics


def after_stored(effect: str, apply: Callable[[], object]) -> None:
    try:
        apply()
    except Exception:
        logger.exception("effect after the write failed", extra={"effect": effect})
        metrics.add_metric(name="EffectsFailedAfterWrite", unit=MetricUnit.Count, value=1)
