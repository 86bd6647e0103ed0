"""Sizes the protocol enforces: API Gateway's frame and message limits and the content a message may carry.

Read once from the environment, so a deployment (or a test) can lower them; the defaults are docs/protocol.md's."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

# https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-execution-service-websocket-limits-table.html
API_GATEWAY_FRAME_BYTES = 32 * 1024
API_GATEWAY_MESSAGE_BYTES = 128 * 1024


@dataclass(frozen=True)
class Limits:
    max_content_bytes: int = 16 * 1024
    max_frame_bytes: int = API_GATEWAY_FRAME_BYTES
    max_outbound_bytes: int = API_GATEWAY_MESSAGE_BYTES

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Limits:
        defaults = cls()
        return cls(
            max_content_bytes=int(environ.get("MAX_CONTENT_BYTES", defaults.max_content_bytes)),
            max_frame_bytes=int(environ.get("MAX_FRAME_BYTES", defaults.max_frame_bytes)),
            max_outbound_bytes=int(environ.get("MAX_OUTBOUND_BYTES", defaults.max_outbound_bytes)),
        )


@cache
def limits() -> Limits:
    return Limits.from_environment(os.environ)
