"""The /notifications namespace's function: a user's own notifications, with read receipts on all their connections."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.protocol.websocket import WebSocketEvent
from shared.routes.notifications import notifications
from shared.wiring.entry import LambdaResponse, websocket_entry
from shared.wiring.loading import loaded
from shared.wiring.services import services


@websocket_entry
def handler(event: dict[str, Any], _context: LambdaContext) -> LambdaResponse:
    return notifications.handle(WebSocketEvent.of(event), services())


# Last: everything this function imports is loaded (shared.wiring.loading).
loaded()
