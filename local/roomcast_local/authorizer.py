"""What API Gateway makes of a REQUEST authorizer's output.

- The policy is matched against the request's `methodArn`: an explicit Deny, or no Allow, refuses (403).
- `context` values must be strings, numbers or booleans; later routes see every one as a string (booleans as
  `true`/`false`); a nested object or array makes the output invalid, and the handshake fails with 500.
https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-lambda-authorizer-output.html
"""

from __future__ import annotations

from typing import Any

from roomcast_local.iam import Statement, allows


class Refused(Exception):
    """The policy does not allow the method: 403."""


class Malformed(Exception):
    """Not an output API Gateway can use: 500."""


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise Malformed(f"context values must be strings, numbers or booleans, not {type(value).__name__}")


def authorized_context(output: Any, method_arn: str) -> dict[str, str]:
    """The `requestContext.authorizer` later routes receive; raises Refused or Malformed."""
    if (
        not isinstance(output, dict)
        or "principalId" not in output
        or not isinstance(output.get("policyDocument"), dict)
    ):
        raise Malformed("an authorizer output needs principalId and policyDocument")
    statements = [
        Statement(
            str(statement.get("Effect")),
            tuple(str(action) for action in _as_list(statement.get("Action", []))),
            tuple(str(resource) for resource in _as_list(statement.get("Resource", []))),
        )
        for statement in _as_list(output["policyDocument"].get("Statement", []))
        if isinstance(statement, dict)
    ]
    context = output.get("context") or {}
    if not isinstance(context, dict):
        raise Malformed("context must be an object")
    values = {str(name): _string(value) for name, value in context.items() if value is not None}
    if not allows(statements, "execute-api:Invoke", method_arn):
        raise Refused(method_arn)
    return {**values, "principalId": _string(output["principalId"])}
