"""Injected AWS failures: a botocore hook that answers chosen operations with an error before moto sees them."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse, HTTPHeaders
from moto.core.models import botocore_stubber


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


class FaultInjector:
    """`fail("PutItem", times=2)` makes the next two PutItem calls answer HTTP 400 throttling (or `status`);
    with `table`, only calls to that table; with `reasons`, a transaction's cancellation reasons."""

    THROTTLE = "ProvisionedThroughputExceededException"

    def __init__(self, session: boto3.session.Session) -> None:
        self._plans: dict[str, list[tuple[int, str, str | None, list[str] | None]]] = {}
        self.injected: Counter[str] = Counter()
        # botocore calls every before-send handler, moto's included, and uses the first response: while a
        # failure is injected, moto's stubber is switched off for that call so the request is not applied.
        session.events.register_first("before-send", self._maybe_fail)  # type: ignore[arg-type]
        session.events.register_last("before-send", self._restore_moto)

    @staticmethod
    def _restore_moto(**_: Any) -> None:
        botocore_stubber.enabled = True

    def fail(
        self,
        operation: str,
        times: int,
        status: int = 400,
        code: str = THROTTLE,
        table: str | None = None,
        reasons: list[str] | None = None,
    ) -> None:
        self._plans[operation] = [(status, code, table, reasons)] * times

    def _maybe_fail(self, request: Any, **_: Any) -> AWSResponse | None:
        target = request.headers.get("X-Amz-Target", b"")
        operation = (target.decode() if isinstance(target, bytes) else target).rsplit(".", 1)[-1]
        plan = self._plans.get(operation)
        if not plan:
            return None
        status, code, table, reasons = plan[0]
        if table is not None and json.loads(request.body or b"{}").get("TableName") != table:
            return None
        plan.pop(0)
        self.injected[operation] += 1
        botocore_stubber.enabled = False
        error: dict[str, Any] = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "injected"}
        if reasons is not None:
            error["CancellationReasons"] = [{"Code": reason} for reason in reasons]
        body = json.dumps(error).encode()
        headers = HTTPHeaders()
        headers["x-amzn-ErrorType"] = code
        headers["Content-Type"] = "application/x-amz-json-1.0"
        return AWSResponse(request.url, status, headers, _Raw(body))
