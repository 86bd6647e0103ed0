"""Powertools' Logger and Metrics, one of each per process, and X-Ray tracing when it is switched on."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger(service="roomcast")
metrics = Metrics(namespace="roomcast", service="roomcast")

Handler = TypeVar("Handler", bound=Callable[..., Any])


def tracing_enabled() -> bool:
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").lower() not in ("true", "1")


def traced(handler: Handler) -> Handler:
    """Powertools' Tracer around a handler, only when tracing is on: importing the X-Ray SDK alone adds
    about 100 ms to every cold start (docs/performance.md), so it is paid only by those who trace."""
    if not tracing_enabled():
        return handler
    from aws_lambda_powertools import Tracer

    wrapped: Handler = Tracer(service="roomcast").capture_lambda_handler(capture_response=False)(handler)
    return wrapped


def instrumented(correlation_id_path: str | None = None) -> Callable[[Handler], Handler]:
    """The one place a Lambda handler gets its cross-cutting concerns: the logging context (with a
    correlation id when the event has one), EMF metrics flushed at the end, and tracing when it is on."""

    def wrap(handler: Handler) -> Handler:
        logged = logger.inject_lambda_context(correlation_id_path=correlation_id_path, clear_state=True)(handler)
        return cast(Handler, metrics.log_metrics(traced(logged)))

    return wrap


__all__ = ["MetricUnit", "instrumented", "logger", "metrics"]
