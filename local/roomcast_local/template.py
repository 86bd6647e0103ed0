"""Reading template.yaml: routes, functions, environment and tables, so local behaviour follows the template."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """Keeps CloudFormation's short-form tags (!Ref, !Sub, ...) as {"Ref": ...} / {"Fn::Sub": ...}."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def read_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as written."""
    with path.open(encoding="utf-8") as handle:
        document: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    return document


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as the SAM CLI reads it: language extensions (Fn::ForEach) expanded first."""
    return expand_language_extensions(read_template(path))


LANGUAGE_EXTENSIONS = "AWS::LanguageExtensions"
_FOR_EACH = "Fn::ForEach::"


def expand_language_extensions(document: dict[str, Any]) -> dict[str, Any]:
    """What CloudFormation's `AWS::LanguageExtensions` transform does with the parts this template uses:
    `Fn::ForEach` loops over a literal list in Resources, Conditions and Outputs, then `Fn::FindInMap`
    with literal arguments. Anything else of the transform is refused rather than half understood."""
    transforms = document.get("Transform", [])
    transforms = [transforms] if isinstance(transforms, str) else list(transforms)
    if LANGUAGE_EXTENSIONS not in transforms:
        return document
    expanded = dict(document)
    expanded["Transform"] = [name for name in transforms if name != LANGUAGE_EXTENSIONS]
    for section in ("Resources", "Conditions", "Outputs"):
        if section in document:
            expanded[section] = _expand_loops(document[section])
    mappings = document.get("Mappings", {})
    return {name: _find_in_maps(value, mappings) for name, value in expanded.items()}


def _expand_loops(section: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in section.items():
        if not key.startswith(_FOR_EACH):
            result[key] = value
            continue
        identifier, collection, fragment = value
        if not isinstance(collection, list):
            raise ValueError(f"{key}: only a literal list is supported as a collection")
        for item in collection:
            generated = _expand_loops(_substitute(fragment, identifier, str(item)))
            clashes = generated.keys() & result.keys()
            if clashes:
                raise ValueError(f"{key} generates {sorted(clashes)} twice")
            result.update(generated)
    return result


def _substitute(value: Any, identifier: str, item: str) -> Any:
    if isinstance(value, str):
        alphanumeric = "".join(character for character in item if character.isalnum())
        return value.replace("${" + identifier + "}", item).replace("&{" + identifier + "}", alphanumeric)
    if isinstance(value, list):
        return [_substitute(element, identifier, item) for element in value]
    if isinstance(value, dict):
        if value == {"Ref": identifier}:
            return item
        return {
            _substitute(key, identifier, item): _substitute(inner, identifier, item) for key, inner in value.items()
        }
    return value


def _find_in_maps(value: Any, mappings: dict[str, Any]) -> Any:
    if isinstance(value, list):
        return [_find_in_maps(element, mappings) for element in value]
    if not isinstance(value, dict):
        return value
    arguments = value.get("Fn::FindInMap")
    if len(value) == 1 and isinstance(arguments, list) and all(isinstance(part, str) for part in arguments):
        name, top, second = arguments
        return mappings[name][top][second]
    return {key: _find_in_maps(inner, mappings) for key, inner in value.items()}


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: body for name, body in template["Resources"].items() if body["Type"] == kind}


@dataclass(frozen=True)
class FunctionDefinition:
    """What the local stack needs to run one `AWS::Serverless::Function` as Lambda would."""

    logical_id: str
    handler: str
    timeout_seconds: float
    memory_mb: int
    properties: dict[str, Any]


def function_definitions(template: dict[str, Any]) -> dict[str, FunctionDefinition]:
    globals_ = template.get("Globals", {}).get("Function", {})
    found = {}
    for name, body in resources(template, "AWS::Serverless::Function").items():
        properties = body["Properties"]
        timeout = properties.get("Timeout", globals_.get("Timeout", 3))  # Lambda's default is 3 s
        memory = properties.get("MemorySize", globals_.get("MemorySize", 128))
        found[name] = FunctionDefinition(
            logical_id=name,
            handler=str(properties["Handler"]),
            timeout_seconds=float(timeout) if isinstance(timeout, int | float | str) else 3.0,
            memory_mb=int(memory) if isinstance(memory, int | str) else 128,
            properties=properties,
        )
    return found


@dataclass(frozen=True)
class TableDefinition:
    logical_id: str
    key_schema: list[dict[str, str]]
    attribute_definitions: list[dict[str, str]]
    ttl_attribute: str | None
    global_secondary_indexes: list[dict[str, Any]]


def table_definitions(template: dict[str, Any]) -> list[TableDefinition]:
    tables = []
    for name, body in resources(template, "AWS::DynamoDB::Table").items():
        properties = body["Properties"]
        ttl = properties.get("TimeToLiveSpecification") or {}
        tables.append(
            TableDefinition(
                logical_id=name,
                key_schema=properties["KeySchema"],
                attribute_definitions=properties["AttributeDefinitions"],
                ttl_attribute=ttl.get("AttributeName") if ttl.get("Enabled") else None,
                global_secondary_indexes=properties.get("GlobalSecondaryIndexes", []),
            )
        )
    return tables


def create_tables(client: Any, template: dict[str, Any], names: dict[str, str]) -> None:
    """Create the template's tables named in `names` (logical id -> table name), with their keys and TTL."""
    for table in table_definitions(template):
        if table.logical_id not in names:
            continue
        indexes = {"GlobalSecondaryIndexes": table.global_secondary_indexes} if table.global_secondary_indexes else {}
        client.create_table(
            TableName=names[table.logical_id],
            KeySchema=table.key_schema,
            AttributeDefinitions=table.attribute_definitions,
            BillingMode="PAY_PER_REQUEST",
            **indexes,
        )
        if table.ttl_attribute:
            client.update_time_to_live(
                TableName=names[table.logical_id],
                TimeToLiveSpecification={"AttributeName": table.ttl_attribute, "Enabled": True},
            )


def referenced_name(value: Any) -> str:
    """The logical id in `integrations/${X}` or `{"Ref": X}`."""
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    text = value["Fn::Sub"] if isinstance(value, dict) else str(value)
    return str(text).split("${", 1)[1].split("}", 1)[0]


def _function_of_uri(uri: Any) -> str:
    """The function logical id in an integration or authorizer URI: `...functions/${X.Arn}/invocations`, or
    `${XAlias<name>}`, the alias SAM makes for a function's `AutoPublishAlias`."""
    text = uri["Fn::Sub"] if isinstance(uri, dict) else str(uri)
    target = str(text).split("functions/${", 1)[1].split("}/invocations", 1)[0]
    return re.sub(r"(\.Arn|Alias[A-Za-z0-9]+)$", "", target)


@dataclass(frozen=True)
class Route:
    route_key: str
    function: str
    two_way: bool


@dataclass(frozen=True)
class WebSocketApi:
    selection_expression: str
    routes: dict[str, Route]
    authorizer_function: str | None
    handlers: dict[str, str]

    def handler_of(self, route_key: str) -> str:
        return self.handlers[self.routes[route_key].function]

    def select(self, body: str | None) -> str:
        """API Gateway's route selection on `$request.body.action`: no match, or no JSON, is `$default`."""
        field = self.selection_expression.removeprefix("$request.body.")
        try:
            value = json.loads(body or "")
        except ValueError:
            return "$default"
        key = _route_value(value.get(field)) if isinstance(value, dict) else None
        if key is not None and key in self.routes and not key.startswith("$"):
            return key
        return "$default"


def _route_value(value: Any) -> str | None:
    """API Gateway compares the selected value as a string: `"action": 5` selects the route `5`."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return None


def websocket_api(template: dict[str, Any]) -> WebSocketApi:
    (api_id, api), *_ = resources(template, "AWS::ApiGatewayV2::Api").items()
    integrations = {
        name: _function_of_uri(body["Properties"]["IntegrationUri"])
        for name, body in resources(template, "AWS::ApiGatewayV2::Integration").items()
    }
    two_way = {
        referenced_name(body["Properties"]["RouteId"])
        for body in resources(template, "AWS::ApiGatewayV2::RouteResponse").values()
    }
    routes = {}
    for name, body in resources(template, "AWS::ApiGatewayV2::Route").items():
        properties = body["Properties"]
        if referenced_name(properties["ApiId"]) != api_id:
            continue
        function = integrations[referenced_name(properties["Target"])]
        routes[properties["RouteKey"]] = Route(properties["RouteKey"], function, name in two_way)
    authorizers = resources(template, "AWS::ApiGatewayV2::Authorizer")
    authorizer = next(iter(authorizers.values()), None)
    handlers = {
        name: str(body["Properties"]["Handler"])
        for name, body in resources(template, "AWS::Serverless::Function").items()
    }
    return WebSocketApi(
        selection_expression=api["Properties"]["RouteSelectionExpression"],
        routes=routes,
        authorizer_function=_function_of_uri(authorizer["Properties"]["AuthorizerUri"]) if authorizer else None,
        handlers=handlers,
    )
