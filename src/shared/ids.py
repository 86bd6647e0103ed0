"""Identifiers: opaque strings that sort by creation time."""

from __future__ import annotations

import secrets
import time

ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,128}$"


def new_id(now_ms: int | None = None) -> str:
    """12 hex digits of milliseconds since the epoch, then 80 random bits: sortable, unguessable."""
    millis = int(time.time() * 1000) if now_ms is None else now_ms
    return f"{millis:012x}{secrets.token_hex(10)}"
