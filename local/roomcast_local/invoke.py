"""Invoking a Lambda handler in this process, as `sam local invoke` does in a container."""

from __future__ import annotations

import importlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from roomcast_local.environment import function_arn

LambdaHandler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LocalContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"
    function_version: str = "$LATEST"
    deadline: float = field(default_factory=lambda: time.monotonic() + 29.0)

    @property
    def invoked_function_arn(self) -> str:
        return function_arn(self.function_name)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def load_handler(path: str) -> LambdaHandler:
    """`handlers.conversations.handler` -> the callable."""
    module_name, _, attribute = path.rpartition(".")
    handler: LambdaHandler = getattr(importlib.import_module(module_name), attribute)
    return handler


def invoke(path: str, event: dict[str, Any], function_name: str = "local") -> Any:
    return load_handler(path)(event, LocalContext(function_name))
