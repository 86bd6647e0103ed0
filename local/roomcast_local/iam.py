"""IAM as the local stack needs it: a function's policy statements from template.yaml, and whether they allow
an action on a resource (an explicit Deny wins; otherwise an Allow must match; `*` and `?` are wildcards).
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from roomcast_local.environment import references, resolve


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]


@cache
def _pattern(glob: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob), re.DOTALL)


def matches(glob: str, value: str, case_sensitive: bool = True) -> bool:
    pattern = _pattern(glob if case_sensitive else glob.lower())
    return pattern.fullmatch(value if case_sensitive else value.lower()) is not None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _sam_template(name: str, arguments: dict[str, Any], refs: dict[str, str]) -> list[Statement]:
    """The SAM policy templates the product may use, expanded as SAM expands them."""
    if name == "LambdaInvokePolicy":
        function = resolve(arguments.get("FunctionName"), refs)
        if function is None:
            return []
        return [Statement("Allow", ("lambda:InvokeFunction",), (f"arn:aws:lambda:*:*:function:{function}*",))]
    return []


def function_statements(template: dict[str, Any], function: str, stage: str) -> list[Statement]:
    refs = references(template, stage)
    found: list[Statement] = []
    for policy in template["Resources"][function]["Properties"].get("Policies", []):
        if not isinstance(policy, dict):
            continue  # a managed policy's name: nothing the local stack checks
        if "Statement" not in policy:
            for name, arguments in policy.items():
                found += _sam_template(name, arguments if isinstance(arguments, dict) else {}, refs)
            continue
        for statement in _as_list(policy["Statement"]):
            resolved = [resolve(resource, refs) for resource in _as_list(statement.get("Resource", []))]
            found.append(
                Statement(
                    str(statement.get("Effect", "Allow")),
                    tuple(str(action) for action in _as_list(statement.get("Action", []))),
                    tuple(resource for resource in resolved if resource is not None),
                )
            )
    return found


def allows(statements: list[Statement], action: str, resource: str) -> bool:
    def applies(statement: Statement) -> bool:
        return any(matches(glob, action, case_sensitive=False) for glob in statement.actions) and any(
            matches(glob, resource) for glob in statement.resources
        )

    relevant = [statement for statement in statements if applies(statement)]
    return bool(relevant) and all(statement.effect == "Allow" for statement in relevant)
