"""Each function's environment, resolved from template.yaml for a local run, as Lambda gives each function its own."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from roomcast_local.template import resources

DEVELOPMENT_SECRET = "roomcast-local-development-secret"
REGION = "us-east-1"
ACCOUNT = "000000000000"
API_ID = "local"
_SUB = re.compile(r"\$\{([^}]+)\}")
# What a worker inherits from the stack's own environment: enough to start Python, nothing of AWS's.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV", "SYSTEMROOT", "TMPDIR")


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def queue_arn(name: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def references(template: dict[str, Any], stage: str | None = None) -> dict[str, str]:
    """What `Ref`, `Fn::GetAtt` and `${...}` resolve to locally: parameter defaults, pseudo parameters, and
    the names and ARNs of tables, buses and functions (a function's name locally is its logical id)."""
    refs = {
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::Partition": "aws",
        "AWS::StackName": "roomcast",  # the stack `make deploy` creates, whose bus backend services default to
        "AWS::URLSuffix": "amazonaws.com",
        "WebSocketApi": API_ID,
    }
    for name, parameter in template.get("Parameters", {}).items():
        if "Default" in parameter:
            refs[name] = str(parameter["Default"])
    if stage is not None:
        refs["StageName"] = stage
    for name, condition in template.get("Conditions", {}).items():
        holds = _holds(condition, refs)
        if holds is not None:
            refs[f"Condition::{name}"] = str(holds)
    for name in resources(template, "AWS::DynamoDB::Table"):
        refs[name] = name
        refs[f"{name}.Arn"] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
    for name, body in resources(template, "AWS::Serverless::Function").items():
        # As in CloudFormation, a function's Ref is its name: its FunctionName when the template sets one.
        deployed = resolve(body["Properties"].get("FunctionName"), refs) or name
        refs[name] = deployed
        refs[f"{name}.Arn"] = function_arn(deployed)
    for name in resources(template, "AWS::SQS::Queue"):
        # A queue's Ref is its URL; the local SQS finds the queue by the URL's last part, whatever its host.
        refs[name] = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
        refs[f"{name}.Arn"] = queue_arn(name)
        refs[f"{name}.QueueName"] = name
    for name, bus in resources(template, "AWS::Events::EventBus").items():
        bus_name = resolve(bus["Properties"]["Name"], refs) or name
        refs[name] = bus_name
        refs[f"{name}.Arn"] = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{bus_name}"
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
    """A template value as a string, or None when it cannot be known locally (unknown conditions or names)."""
    if isinstance(value, str | int | float):
        return str(value)
    if not isinstance(value, dict) or len(value) != 1:
        return None
    ((function, argument),) = value.items()
    intrinsic = _INTRINSICS.get(function)
    return None if intrinsic is None else intrinsic(argument, refs)


def _if(argument: Any, refs: dict[str, str]) -> str | None:
    condition, when_true, when_false = argument
    holds = refs.get(f"Condition::{condition}")
    return None if holds is None else resolve(when_true if holds == "True" else when_false, refs)


def _get_att(argument: Any, refs: dict[str, str]) -> str | None:
    logical, attribute = argument
    return refs.get(f"{logical}.{attribute}")


def _sub(argument: Any, refs: dict[str, str]) -> str | None:
    if not isinstance(argument, str) or not all(name in refs for name in _SUB.findall(argument)):
        return None
    return _SUB.sub(lambda match: refs[match.group(1)], argument)


_INTRINSICS: dict[str, Callable[[Any, dict[str, str]], str | None]] = {
    "Ref": lambda argument, refs: refs.get(str(argument)),
    "Fn::GetAtt": _get_att,
    "Fn::If": _if,
    "Fn::Sub": _sub,
}


def function_environment(
    template: dict[str, Any], function: str, stage: str | None = None, developer: dict[str, str] | None = None
) -> dict[str, str]:
    """Globals' variables overlaid with the function's own, as Lambda merges them. A variable the template
    sets from a parameter (`!Ref PresenceGraceSeconds`) takes the value of the same-named variable in
    `developer` (the environment `make run` was started in) when set there, as a deploy's parameter would."""
    refs = references(template, stage)
    parameters = template.get("Parameters", {})
    globals_ = template.get("Globals", {}).get("Function", {})
    own = template["Resources"][function]["Properties"]
    environment: dict[str, str] = {}
    for source in (globals_, own):
        for name, value in source.get("Environment", {}).get("Variables", {}).items():
            from_parameter = isinstance(value, dict) and value.get("Ref") in parameters
            resolved = (developer or {}).get(name) if from_parameter and name in (developer or {}) else None
            resolved = resolved if resolved is not None else resolve(value, refs)
            if resolved is None:
                environment.pop(name, None)
            else:
                environment[name] = resolved
    return environment


@dataclass(frozen=True)
class Endpoints:
    """Where a worker's AWS clients go locally instead of AWS."""

    stack_url: str
    stage: str
    dynamodb: str

    @property
    def management_api(self) -> str:
        return f"{self.stack_url}/{self.stage}"


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str


def worker_environment(
    template: dict[str, Any],
    function: str,
    *,
    endpoints: Endpoints,
    credentials: Credentials,
    secret: str,
    verbose: bool,
) -> dict[str, str]:
    """The whole environment of one function's workers: nothing leaks from the stack's own but what starts Python."""
    environment = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    environment.update(function_environment(template, function, endpoints.stage, developer=dict(os.environ)))
    environment.update(
        AWS_LAMBDA_FUNCTION_NAME=function,
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        # Each function signs with its own keys, so @connections and Invoke know which function is calling.
        AWS_ACCESS_KEY_ID=credentials.access_key_id,
        AWS_SECRET_ACCESS_KEY=credentials.secret_access_key,
        AWS_SESSION_TOKEN=credentials.session_token,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        MANAGEMENT_API_URL=endpoints.management_api,
        AWS_ENDPOINT_URL_DYNAMODB=endpoints.dynamodb,
        AWS_ENDPOINT_URL_LAMBDA=endpoints.stack_url,
        AWS_ENDPOINT_URL_EVENTBRIDGE=endpoints.stack_url,
        AWS_ENDPOINT_URL_SQS=endpoints.stack_url,
        JWT_SECRET_KEY_CALL=secret,
        POWERTOOLS_TRACE_DISABLED="true",
        POWERTOOLS_METRICS_DISABLED="false" if verbose else "true",
        POWERTOOLS_LOG_LEVEL="INFO" if verbose else "WARNING",
        PYTHONUNBUFFERED="1",
    )
    # The secret's ARN is a condition of the template; locally the secret comes from JWT_SECRET_KEY_CALL.
    environment.pop("JWT_SECRET_ARN", None)
    if function_uses_origins(template, function):
        # Like the original system in development: browsers from any localhost port.
        environment["ALLOWED_ORIGINS"] = os.environ.get("ALLOWED_ORIGINS", "http://localhost:*,http://127.0.0.1:*")
    return environment


def function_uses_origins(template: dict[str, Any], function: str) -> bool:
    own = template["Resources"][function]["Properties"]
    return "ALLOWED_ORIGINS" in own.get("Environment", {}).get("Variables", {})


def function_arns(template: dict[str, Any]) -> dict[str, str]:
    """Each function's ARN by logical id, as `!GetAtt F.Arn` resolves it locally."""
    refs = references(template)
    return {name: refs[f"{name}.Arn"] for name in resources(template, "AWS::Serverless::Function")}


def deployed_names(template: dict[str, Any]) -> dict[str, str]:
    """Each function's name as Lambda knows it (its FunctionName, or the logical id) -> its logical id."""
    refs = references(template)
    return {refs[name]: name for name in resources(template, "AWS::Serverless::Function")}
