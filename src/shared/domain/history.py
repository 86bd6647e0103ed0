"""Shaping a page of history: chronological order, a cursor for the next page, and a size that fits a frame."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.protocol.frames import fitting
from shared.stores.conversations import MessageSlice


@dataclass(frozen=True)
class Page:
    messages: list[dict[str, Any]]
    next_cursor: int | None

    def public(self) -> dict[str, Any]:
        return {"messages": self.messages, "nextCursor": self.next_cursor}


def history_page(found: MessageSlice, forward: bool, max_bytes: int) -> Page:
    """`found` runs outward from the cursor. Keep what fits in `max_bytes`, nearest the cursor first;
    the next cursor is the seq of the last message kept when anything was left out."""
    kept = fitting([message.public() for message in found.messages], max_bytes)
    truncated = len(kept) < len(found.messages)
    next_cursor = int(kept[-1]["seq"]) if kept and (found.has_more or truncated) else None
    return Page(kept if forward else kept[::-1], next_cursor)
