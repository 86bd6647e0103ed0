"""Powertools' Logger, Metrics and Tracer, one of each per process."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger(service="roomcast")
metrics = Metrics(namespace="roomcast", service="roomcast")
tracer = Tracer(service="roomcast")

__all__ = ["MetricUnit", "logger", "metrics", "tracer"]
