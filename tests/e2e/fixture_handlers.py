"""Handlers of tests/e2e/fidelity.yaml: each answers what the stack did, so a test can compare it with AWS."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import boto3
from botocore.exceptions import ClientError

MESSAGE_LIMIT = 128 * 1024


def authorize(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    """`?auth=nested` returns a nested context value; `?auth=elsewhere` allows another API's ARN only."""
    mode = (event.get("queryStringParameters") or {}).get("auth", "")
    resource = event["methodArn"]
    if mode == "elsewhere":
        resource = "arn:aws:execute-api:us-east-1:000000000000:another-api/*"
    context: dict[str, Any] = {"exp": 1700000000, "admin": True, "ratio": 0.5, "name": "ana"}
    if mode == "nested":
        context["claims"] = {"role": "admin"}
    statement = {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": [resource.rsplit("/", 1)[0] + "/*"]}
    return {
        "principalId": "ana",
        "policyDocument": {"Version": "2012-10-17", "Statement": [statement]},
        "context": context,
    }


def connect(event: dict[str, Any], _context: Any) -> Any:
    mode = (event.get("queryStringParameters") or {}).get("connect", "")
    if mode == "none":
        return None
    if mode == "raise":
        raise RuntimeError("connect failed")
    if mode == "protocol":
        return {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "roomcast.v1"}}
    _report({"connectHeaders": event["headers"], "domainName": event["requestContext"]["domainName"]})
    return {"statusCode": 200}


def disconnect(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    context = event["requestContext"]
    record = {
        "disconnected": context["connectionId"],
        "code": context["disconnectStatusCode"],
        "reason": context["disconnectReason"],
        "at": time.time(),
    }
    _report(record)
    return {"statusCode": 200}


def _management() -> Any:
    return boto3.client("apigatewaymanagementapi", endpoint_url=os.environ["MANAGEMENT_API_URL"])


def _reply(data: Any) -> dict[str, Any]:
    return {"statusCode": 200, "body": json.dumps(data)}


def message(event: dict[str, Any], lambda_context: Any) -> Any:  # noqa: PLR0911 - one branch per behaviour under test
    context = event["requestContext"]
    body = json.loads(event["body"]) if event["body"].startswith("{") else {}
    do = body.get("do")
    if do == "sleep":
        started = time.time()
        time.sleep(float(body["seconds"]))
        record = {"slept": body.get("tag"), "start": started, "end": time.time()}
        _report(record)
        return _reply(record)
    if do == "big":
        return {"statusCode": 200, "body": "x" * (MESSAGE_LIMIT + 1)}
    if do == "not-a-string":
        return {"statusCode": 200, "body": {"not": "a string"}}
    if do == "unserializable":
        return {"statusCode": 200, "body": "{}", "extra": {1, 2}}
    if do == "raise":
        raise RuntimeError("handler failed")
    if do == "post":
        try:
            _management().post_to_connection(ConnectionId=context["connectionId"], Data=b'{"posted": true}')
        except ClientError as error:
            return _reply({"postError": error.response["Error"]["Code"]})
        return None
    if do == "invoke":
        return _reply(_invoke(context["connectionId"], body.get("target", os.environ.get("PEER", ""))))
    environment = {
        name: os.environ.get(name) for name in ("OWN", "SHARED", "PEER", "PEER_ARN", "AWS_LAMBDA_FUNCTION_NAME")
    }
    return _reply(
        {
            "route": context["routeKey"],
            "connectionId": context["connectionId"],
            "functionArn": lambda_context.invoked_function_arn,
            "bytes": len(event["body"].encode()),
            "authorizer": context.get("authorizer"),
            "environment": environment,
        }
    )


def _invoke(connection_id: str, target: str) -> dict[str, Any]:
    client = boto3.client("lambda")
    try:
        answered = client.invoke(FunctionName=target, Payload=json.dumps({"connectionId": connection_id}).encode())
        client.invoke(
            FunctionName=os.environ["PEER_ARN"],
            InvocationType="Event",
            Payload=json.dumps({"connectionId": connection_id, "post": True}).encode(),
        )
    except ClientError as error:
        return {"invokeError": error.response["Error"]["Code"]}
    return {"status": answered["StatusCode"], "payload": json.loads(answered["Payload"].read())}


def peer(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    if event.get("post"):
        _management().post_to_connection(ConnectionId=event["connectionId"], Data=b'{"fromEvent": true}')
    return {"function": os.environ["AWS_LAMBDA_FUNCTION_NAME"], "own": os.environ.get("OWN")}


def _report(record: dict[str, Any]) -> None:
    """One line in one write: workers running side by side share the stack's output pipe, and print() writes the
    text and its newline apart, so two reports could run together on one line."""
    os.write(sys.stderr.fileno(), (json.dumps(record) + "\n").encode())
