"""Shaping a page of history: chronological order, a cursor for the next page, and a size that fits a frame."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared.conversation_store import MessageSlice

# Room for the envelope around the messages: event name, ackId, nextCursor.
_ENVELOPE_BYTES = 512


@dataclass(frozen=True)
class Page:
    messages: list[dict[str, Any]]
    next_cursor: str | None

    def public(self) -> dict[str, Any]:
        return {"messages": self.messages, "nextCursor": self.next_cursor}


def history_page(found: MessageSlice, forward: bool, max_bytes: int) -> Page:
    """`found` runs outward from the cursor. Keep what fits in `max_bytes`, nearest the cursor first;
    the next cursor is the last message kept when anything was left out."""
    kept: list[dict[str, Any]] = []
    used = _ENVELOPE_BYTES
    for message in found.messages:
        public = message.public()
        size = len(json.dumps(public, ensure_ascii=False, separators=(",", ":")).encode("utf-8")) + 1
        if used + size > max_bytes:
            break
        kept.append(public)
        used += size
    truncated = len(kept) < len(found.messages)
    next_cursor = kept[-1]["id"] if kept and (found.has_more or truncated) else None
    return Page(kept if forward else kept[::-1], next_cursor)
