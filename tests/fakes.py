"""Stand-ins: @connections that records every post and can play gone or failing peers; a deferrer that
queues the tasks a request hands off, for the test to run after the reply."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from shared.delivery.deferred import AnyTask
from shared.delivery.management_api import Delivery


class RecordingGateway:
    def __init__(self) -> None:
        self.frames: dict[str, list[dict[str, Any]]] = defaultdict(list)
        # What Socket.IO connections were sent: Engine.IO / Socket.IO text, not JSON objects.
        self.texts: dict[str, list[str]] = defaultdict(list)
        self.gone: set[str] = set()
        self.failing: set[str] = set()
        self.closed: list[str] = []
        self.calls = 0
        self._lock = threading.Lock()

    def post_many(self, connection_ids: Sequence[str], data: bytes) -> list[Delivery]:
        return [self.post(connection_id, data) for connection_id in connection_ids]

    def post(self, connection_id: str, data: bytes) -> Delivery:
        with self._lock:
            self.calls += 1
            if connection_id in self.gone:
                return Delivery.GONE
            if connection_id in self.failing:
                return Delivery.FAILED
            text = data.decode("utf-8")
            if text[:1].isdigit():
                self.texts[connection_id].append(text)
            else:
                self.frames[connection_id].append(json.loads(text))
            return Delivery.DELIVERED

    def close(self, connection_id: str) -> None:
        self.closed.append(connection_id)

    def events(self, connection_id: str, name: str | None = None) -> list[dict[str, Any]]:
        return [frame for frame in self.frames[connection_id] if name is None or frame.get("event") == name]

    def clear(self) -> None:
        self.frames.clear()
        self.texts.clear()


class QueuedDeferrer:
    """Keeps handed-off tasks in order. With `auto`, the test support runs them after each invocation
    returns, as Lambda runs an asynchronous invocation after the caller's reply."""

    def __init__(self) -> None:
        self.tasks: list[AnyTask] = []
        self.auto = True
        self._lock = threading.Lock()

    def defer(self, task: AnyTask) -> None:
        with self._lock:
            self.tasks.append(task)

    def take(self) -> list[AnyTask]:
        with self._lock:
            taken, self.tasks = self.tasks, []
        return taken
