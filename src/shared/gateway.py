"""The API Gateway Management API (`@connections`) behind a small interface."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from shared.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient


class Delivery(Enum):
    DELIVERED = "delivered"
    GONE = "gone"
    FAILED = "failed"


class Gateway(Protocol):
    def post(self, connection_id: str, data: bytes) -> Delivery: ...

    def close(self, connection_id: str) -> None: ...


class ManagementApi:
    """Posts through boto3. A 410 means the peer is gone for good; any other failure is this call's alone."""

    def __init__(self, client: ApiGatewayManagementApiClient) -> None:
        self._client = client

    def post(self, connection_id: str, data: bytes) -> Delivery:
        try:
            self._client.post_to_connection(ConnectionId=connection_id, Data=data)
        except self._client.exceptions.GoneException:
            return Delivery.GONE
        except (ClientError, BotoCoreError) as error:
            logger.warning("post_to_connection failed", extra={"target": connection_id, "error": str(error)})
            return Delivery.FAILED
        return Delivery.DELIVERED

    def close(self, connection_id: str) -> None:
        try:
            self._client.delete_connection(ConnectionId=connection_id)
        except self._client.exceptions.GoneException:
            return
