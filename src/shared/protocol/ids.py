"""Identifiers: opaque strings that sort by creation time."""

from __future__ import annotations

import secrets
import time

ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,128}$"
SEQ_DIGITS = 12


def new_id(now_ms: int | None = None) -> str:
    """12 hex digits of milliseconds since the epoch, then 80 random bits: sortable, unguessable."""
    millis = int(time.time() * 1000) if now_ms is None else now_ms
    return f"{millis:012x}{secrets.token_hex(10)}"


def message_id(seq: int) -> str:
    """A message's id leads with its conversation seq (12 digits), then 64 random bits: ids sort like seqs
    within a conversation, and the id alone locates the message."""
    return f"{seq:0{SEQ_DIGITS}d}{secrets.token_hex(8)}"


def seq_of(message_id: str) -> int | None:
    """The seq a message id leads with; None for a string that is not a message id."""
    head = message_id[:SEQ_DIGITS]
    if len(message_id) <= SEQ_DIGITS or not head.isascii() or not head.isdigit():
        return None
    return int(head)
