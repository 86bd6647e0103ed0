"""A test client over a real WebSocket: sends actions, waits for events, proves silence."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from roomcast_local.environment import mint_token
from roomcast_local.testing import DEVELOPMENT_SECRET


def company() -> str:
    """A fresh company per test: the stack is shared, tenants are not."""
    return f"co-{uuid.uuid4().hex[:10]}"


class Client:
    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.inbox: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, url: str, user: str, company_id: str) -> Client:
        token = mint_token(user, company_id, None, 3600, DEVELOPMENT_SECRET)
        return cls(await connect(f"{url}?token={token}"))

    async def send(self, action: str, data: dict[str, Any] | None = None, ack_id: str | None = None) -> None:
        frame: dict[str, Any] = {"action": action, "data": data or {}}
        if ack_id is not None:
            frame["ackId"] = ack_id
        await self.connection.send(json.dumps(frame))

    async def next(self, event: str, timeout: float = 5.0) -> dict[str, Any]:
        """The first frame named `event`, from what arrived already or what arrives next."""
        for index, frame in enumerate(self.inbox):
            if frame.get("event") == event:
                return self.inbox.pop(index)
        async with asyncio.timeout(timeout):
            while True:
                frame = json.loads(await self.connection.recv())
                if frame.get("event") == event:
                    return dict(frame)
                self.inbox.append(frame)

    async def ok(self, action: str, data: dict[str, Any] | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """`timeout`: longer for the first action a fresh stack's function runs (its worker imports on first use)."""
        ack_id = uuid.uuid4().hex[:8]
        await self.send(action, data, ack_id)
        while True:
            ack = await self.next("ack", timeout)
            if ack["ackId"] == ack_id:
                assert ack["ok"] is True, ack
                result: dict[str, Any] = ack["data"]
                return result
            self.inbox.append(ack)

    async def silent(self, within: float = 0.5) -> list[dict[str, Any]]:
        """Everything that arrives within `within` seconds (a test of silence expects [])."""
        try:
            async with asyncio.timeout(within):
                while True:
                    self.inbox.append(json.loads(await self.connection.recv()))
        except TimeoutError:
            pass
        received, self.inbox = self.inbox, []
        return received

    async def close(self) -> None:
        await self.connection.close()
