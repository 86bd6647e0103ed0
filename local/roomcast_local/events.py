"""API Gateway's WebSocket event shapes, built for the local stack."""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy, MultiMapping

from roomcast_local.environment import ACCOUNT, API_ID, REGION


def _millis() -> int:
    return int(time.time() * 1000)


def _request_time(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


@dataclass
class Peer:
    """What API Gateway knows of a connection."""

    connection_id: str
    source_ip: str
    user_agent: str | None
    domain_name: str
    stage: str
    connected_at: int = field(default_factory=_millis)
    authorizer: dict[str, Any] = field(default_factory=dict)

    def request_context(self, route_key: str, event_type: str) -> dict[str, Any]:
        now = _millis()
        request_id = uuid.uuid4().hex[:16]
        context: dict[str, Any] = {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": _request_time(now),
            "messageDirection": "IN",
            "stage": self.stage,
            "connectedAt": self.connected_at,
            "requestTimeEpoch": now,
            "identity": {"sourceIp": self.source_ip, **({"userAgent": self.user_agent} if self.user_agent else {})},
            "requestId": request_id,
            "domainName": self.domain_name,
            "connectionId": self.connection_id,
            "apiId": API_ID,
        }
        if self.authorizer:
            context["authorizer"] = self.authorizer
        return context


def gateway_headers(headers: CIMultiDictProxy[str], source_ip: str, port: int, scheme: str) -> CIMultiDict[str]:
    """The handshake's headers as API Gateway passes them on: with the X-Forwarded-* its load balancer adds and
    an X-Ray trace id (https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-api-lambda-auth.html)."""
    added = CIMultiDict(headers)
    trace = f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)}"
    for name, value in (
        ("X-Amzn-Trace-Id", trace),
        ("X-Forwarded-For", source_ip),
        ("X-Forwarded-Port", str(port)),
        ("X-Forwarded-Proto", scheme),
    ):
        if name not in added:
            added[name] = value
    return added


def _headers(headers: CIMultiDict[str] | CIMultiDictProxy[str]) -> tuple[dict[str, str], dict[str, list[str]]]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in headers.items():
        single[name] = value
        multi.setdefault(name, []).append(value)
    return single, multi


def _query(query: MultiMapping[str]) -> dict[str, Any]:
    """API Gateway omits the query keys entirely when there is no query string."""
    if not query:
        return {}
    multi: dict[str, list[str]] = {}
    for name, value in query.items():
        multi.setdefault(name, []).append(value)
    return {
        "queryStringParameters": {name: values[-1] for name, values in multi.items()},
        "multiValueQueryStringParameters": multi,
    }


def authorizer_event(peer: Peer, headers: CIMultiDict[str], query: MultiMapping[str]) -> dict[str, Any]:
    single, multi = _headers(headers)
    return {
        "type": "REQUEST",
        "methodArn": f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/{peer.stage}/$connect",
        "headers": single,
        "multiValueHeaders": multi,
        **_query(query),
        "stageVariables": {},
        "requestContext": peer.request_context("$connect", "CONNECT"),
    }


def connect_event(peer: Peer, headers: CIMultiDict[str], query: MultiMapping[str]) -> dict[str, Any]:
    single, multi = _headers(headers)
    return {
        "headers": single,
        "multiValueHeaders": multi,
        **_query(query),
        "requestContext": peer.request_context("$connect", "CONNECT"),
        "isBase64Encoded": False,
    }


def message_event(peer: Peer, route_key: str, body: str) -> dict[str, Any]:
    context = peer.request_context(route_key, "MESSAGE")
    context["messageId"] = uuid.uuid4().hex[:16]
    return {"requestContext": context, "body": body, "isBase64Encoded": False}


def disconnect_event(peer: Peer, status_code: int, reason: str) -> dict[str, Any]:
    headers = {"Host": peer.domain_name, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    context = peer.request_context("$disconnect", "DISCONNECT")
    context["disconnectStatusCode"] = status_code
    context["disconnectReason"] = reason
    return {
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "requestContext": context,
        "isBase64Encoded": False,
    }
