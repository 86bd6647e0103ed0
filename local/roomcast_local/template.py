"""Reading template.yaml: routes, functions, environment and tables, so local behaviour follows the template."""

from __future__ import annotations

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


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        document: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    return document


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: body for name, body in template["Resources"].items() if body["Type"] == kind}


@dataclass(frozen=True)
class TableDefinition:
    logical_id: str
    key_schema: list[dict[str, str]]
    attribute_definitions: list[dict[str, str]]
    ttl_attribute: str | None


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
            )
        )
    return tables


def create_tables(client: Any, template: dict[str, Any], names: dict[str, str]) -> None:
    """Create each table of the template under `names[logical_id]`, with its keys and TTL."""
    for table in table_definitions(template):
        client.create_table(
            TableName=names[table.logical_id],
            KeySchema=table.key_schema,
            AttributeDefinitions=table.attribute_definitions,
            BillingMode="PAY_PER_REQUEST",
        )
        if table.ttl_attribute:
            client.update_time_to_live(
                TableName=names[table.logical_id],
                TimeToLiveSpecification={"AttributeName": table.ttl_attribute, "Enabled": True},
            )
