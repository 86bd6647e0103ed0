"""Handlers of tests/e2e/failures.yaml."""

from __future__ import annotations

import json
from typing import Any


def raises(_event: dict[str, Any], _context: Any) -> None:
    raise RuntimeError("the scheduled job failed")


def sized(event: dict[str, Any], _context: Any) -> Any:
    """`{"bytes": N}` (invoked directly) returns N characters; a WebSocket frame gets a short reply."""
    if "requestContext" in event:
        return {"statusCode": 200, "body": json.dumps({"echo": event.get("body")})}
    return "x" * int(event["bytes"])
