"""Sending events to rooms: members are queried page by page and posted to in parallel."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from shared.connections import Closed, ConnectionStore, Opened
from shared.errors import ErrorCode, RoomcastError
from shared.events import presence_event
from shared.gateway import Delivery, Gateway
from shared.observability import MetricUnit, logger, metrics
from shared.protocol import Frame, encode
from shared.rooms import Room, company_room


@dataclass
class FanoutReport:
    recipients: int = 0
    delivered: int = 0
    failed: int = 0
    gone: list[str] = field(default_factory=list)


class Hub:
    def __init__(self, store: ConnectionStore, gateway: Gateway, max_outbound_bytes: int) -> None:
        self._store = store
        self._gateway = gateway
        self._max_outbound_bytes = max_outbound_bytes

    def encode(self, frame: Frame) -> bytes:
        data = encode(frame).encode("utf-8")
        if len(data) > self._max_outbound_bytes:
            raise RoomcastError(ErrorCode.PAYLOAD_TOO_LARGE, f"event exceeds {self._max_outbound_bytes} bytes")
        return data

    def emit(self, company_id: str, room: Room, frame: Frame, exclude: str | None = None) -> FanoutReport:
        """Send `frame` to every connection in the room; connections found gone are cleaned up."""
        report = self._post_to_room(company_id, room, self.encode(frame), exclude)
        self._drop(report.gone)
        return report

    def send(self, connection_id: str, frame: Frame) -> Delivery:
        (delivery,) = self._gateway.post_many([connection_id], self.encode(frame))
        if delivery is Delivery.GONE:
            self._drop([connection_id])
        return delivery

    def close(self, connection_id: str) -> None:
        """Close a connection from the server side; its $disconnect cleans up."""
        self._gateway.close(connection_id)

    def sweep(self, now: datetime) -> int:
        """Forget connections whose $disconnect never came; returns how many."""
        stale = self._store.stale(now)
        for opened in stale:
            self.disconnect(opened.connection_id, remembered=opened)
        return len(stale)

    def disconnect(self, connection_id: str, remembered: Opened | None = None) -> Closed | None:
        """Forget a connection; tell its company when that was the user's last one."""
        pending = deque([connection_id])
        first: Closed | None = None
        # Telling a company that a user went offline can reveal more gone connections: a worklist, not recursion.
        while pending:
            current = pending.popleft()
            closed = self._store.close(current, remembered if current == connection_id else None)
            if first is None and closed is not None and closed.connection.connection_id == connection_id:
                first = closed
            if closed is None or not closed.went_offline:
                continue
            identity = closed.connection.identity
            report = self._post_to_room(
                identity.company_id,
                company_room(identity.company_id),
                self.encode(presence_event(identity.user_id, online=False)),
                exclude=None,
            )
            pending.extend(report.gone)
        return first

    def _drop(self, gone: list[str]) -> None:
        if gone:
            metrics.add_metric(name="GoneConnections", unit=MetricUnit.Count, value=len(gone))
        for connection_id in gone:
            self.disconnect(connection_id)

    def _post_to_room(self, company_id: str, room: Room, data: bytes, exclude: str | None) -> FanoutReport:
        recipients = [
            connection_id
            for page in self._store.members(company_id, room)
            for connection_id in page
            if connection_id != exclude
        ]
        report = FanoutReport(recipients=len(recipients))
        for connection_id, delivery in zip(recipients, self._gateway.post_many(recipients, data), strict=True):
            if delivery is Delivery.DELIVERED:
                report.delivered += 1
            elif delivery is Delivery.GONE:
                report.gone.append(connection_id)
            else:
                report.failed += 1
        metrics.add_metric(name="FanoutRecipients", unit=MetricUnit.Count, value=report.recipients)
        if report.failed:
            metrics.add_metric(name="FanoutFailures", unit=MetricUnit.Count, value=report.failed)
            logger.warning("some recipients failed", extra={"room": room.name, "failed": report.failed})
        return report
