"""Shaping a page of history: chronological order, a cursor for the next page, and a size that fits a frame."""

from __future__ import annotations

from shared.protocol.frames import fitting
from shared.protocol.outbound import HistoryPage
from shared.stores.conversations import MessageSlice


def history_page(found: MessageSlice, after: int | None, max_bytes: int) -> HistoryPage:
    """`found` runs outward from the cursor, forward when `after` is given. Keep what fits in `max_bytes`,
    nearest the cursor first; the next cursor is the seq of the last message kept when anything was left out,
    or `after` itself when a forward page is empty but more follows (a lower seq is still being written)."""
    kept = fitting(found.messages, max_bytes)
    truncated = len(kept) < len(found.messages)
    more = found.has_more or truncated
    next_cursor = (kept[-1].seq if kept else after) if more else None
    return HistoryPage(messages=kept if after is not None else kept[::-1], nextCursor=next_cursor)
