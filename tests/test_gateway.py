"""The real boto3 Management API client behind the Gateway interface, answered by moto."""

from __future__ import annotations

import boto3

from shared.gateway import Delivery, ManagementApi


def test_posts_reach_the_management_api(aws: None) -> None:
    from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends

    client = boto3.client(
        "apigatewaymanagementapi", endpoint_url="https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/prod"
    )
    gateway = ManagementApi(client)
    assert gateway.post("conn-1", b'{"event":"pong"}') is Delivery.DELIVERED
    backend = apigatewaymanagementapi_backends["123456789012"]["us-east-1"]
    assert backend.connections["conn-1"].data == b'{"event":"pong"}'
