"""Shaping a page of history: chronological order, a cursor for the next page, and a size that fits a frame."""

from __future__ import annotations

from shared.protocol.frames import fitting
from shared.protocol.outbound import HistoryPage
from shared.stores.conversations import MessageSlice


def history_page(found: MessageSlice, forward: bool, max_bytes: int) -> HistoryPage:
    """`found` runs outward from the cursor. Keep what fits in `max_bytes`, nearest the cursor first;
    the next cursor is the seq of the last message kept when anything was left out."""
    kept = fitting(found.messages, max_bytes)
    truncated = len(kept) < len(found.messages)
    next_cursor = kept[-1].seq if kept and (found.has_more or truncated) else None
    return HistoryPage(messages=kept if forward else kept[::-1], nextCursor=next_cursor)
