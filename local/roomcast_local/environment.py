"""The handlers' environment, resolved from template.yaml for a local run."""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from roomcast_local.template import resources

log = logging.getLogger("stack")  # not "roomcast...": Powertools filters its own service name from root handlers

DEVELOPMENT_SECRET = "roomcast-local-development-secret"
REGION = "us-east-1"
ACCOUNT = "000000000000"
_SUB = re.compile(r"\$\{([^}]+)\}")


def references(template: dict[str, Any]) -> dict[str, str]:
    """What `Ref` and `${...}` resolve to locally: parameter defaults, pseudo parameters, table names."""
    refs = {
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::Partition": "aws",
        "AWS::StackName": "roomcast",  # the stack `make deploy` creates, whose bus backend services default to
        "AWS::URLSuffix": "amazonaws.com",
        "WebSocketApi": "local",
    }
    for name, parameter in template.get("Parameters", {}).items():
        if "Default" in parameter:
            refs[name] = str(parameter["Default"])
    for name, condition in template.get("Conditions", {}).items():
        holds = _holds(condition, refs)
        if holds is not None:
            refs[f"Condition::{name}"] = str(holds)
    for name in resources(template, "AWS::DynamoDB::Table"):
        refs[name] = name
    for name, bus in resources(template, "AWS::Events::EventBus").items():
        refs[name] = resolve(bus["Properties"]["Name"], refs) or name
    return refs


def _holds(condition: Any, refs: dict[str, str]) -> bool | None:
    """A condition built from Fn::Equals and Fn::Not over values known locally; None when it is not."""
    if isinstance(condition, dict) and "Fn::Equals" in condition:
        left, right = (resolve(side, refs) for side in condition["Fn::Equals"])
        return None if left is None or right is None else left == right
    if isinstance(condition, dict) and "Fn::Not" in condition:
        inner = _holds(condition["Fn::Not"][0], refs)
        return None if inner is None else not inner
    return None


def resolve(value: Any, refs: dict[str, str]) -> str | None:
    """A template value as a string, or None when it cannot be known locally (ARNs, unknown conditions)."""
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, dict) and "Fn::If" in value:
        condition, when_true, when_false = value["Fn::If"]
        holds = refs.get(f"Condition::{condition}")
        return None if holds is None else resolve(when_true if holds == "True" else when_false, refs)
    if isinstance(value, dict) and "Ref" in value:
        return refs.get(value["Ref"])
    if isinstance(value, dict) and "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):
        names = _SUB.findall(value["Fn::Sub"])
        if not all(name in refs for name in names):
            return None
        return _SUB.sub(lambda match: refs[match.group(1)], value["Fn::Sub"])
    return None


def function_environment(template: dict[str, Any]) -> dict[str, str]:
    """Globals plus every function's variables. One process hosts every function, so they share one
    environment; a variable two functions set differently is reported."""
    refs = references(template)
    sources = [template.get("Globals", {}).get("Function", {})]
    sources += [body["Properties"] for body in resources(template, "AWS::Serverless::Function").values()]
    environment: dict[str, str] = {}
    for source in sources:
        for name, value in source.get("Environment", {}).get("Variables", {}).items():
            resolved = resolve(value, refs)
            if resolved is None:
                continue
            if name in environment and environment[name] != resolved:
                log.warning("%s differs between functions; using %s", name, environment[name])
                continue
            environment.setdefault(name, resolved)
    return environment


def local_environment(
    template: dict[str, Any], management_url: str, dynamodb_endpoint: str, secret: str, verbose: bool
) -> dict[str, str]:
    environment = function_environment(template)
    environment.update(
        MANAGEMENT_API_URL=management_url,
        AWS_ENDPOINT_URL_DYNAMODB=dynamodb_endpoint,
        JWT_SECRET_KEY_CALL=secret,
        AWS_DEFAULT_REGION=REGION,
        POWERTOOLS_TRACE_DISABLED="true",
        POWERTOOLS_METRICS_DISABLED="false" if verbose else "true",
        POWERTOOLS_LOG_LEVEL="INFO" if verbose else "WARNING",
    )
    environment.pop("JWT_SECRET_ARN", None)
    # Like the original system in development: browsers from any localhost port.
    environment["ALLOWED_ORIGINS"] = os.environ.get("ALLOWED_ORIGINS", "http://localhost:*,http://127.0.0.1:*")
    return environment
