"""docs/asyncapi.yaml: current, valid AsyncAPI 3, complete (tests/test_contract.py checks it is true to the frames
the handlers really send)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from roomcast_local.asyncapi import document, namespaces, render
from shared.protocol.outbound import EVENTS, REPLIES, check_event

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs" / "asyncapi.yaml"
SCHEMA = ROOT / "node_modules" / "@asyncapi" / "specs" / "schemas" / "3.0.0.json"


def test_the_committed_document_is_what_the_code_generates() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render(), "run `make asyncapi` and commit docs/asyncapi.yaml"


def test_the_document_is_valid_asyncapi_3() -> None:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    committed = yaml.safe_load(COMMITTED.read_text(encoding="utf-8"))
    assert [error.message for error in validator.iter_errors(committed)] == []
    broken = {**committed, "operations": {"x": {"action": "publish", "channel": {"$ref": "#/channels/roomcast"}}}}
    assert list(validator.iter_errors(broken)), "the validator must see an invalid document"


def _references(value: Any) -> list[str]:
    if isinstance(value, dict):
        own = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return own + [found for inner in value.values() for found in _references(inner)]
    if isinstance(value, list):
        return [found for inner in value for found in _references(inner)]
    return []


def test_every_reference_in_the_document_resolves() -> None:
    generated = document()
    for reference in _references(generated):
        node: Any = generated
        for part in reference.removeprefix("#/").split("/"):
            assert part in node, reference
            node = node[part]


def test_every_action_the_namespaces_route_has_a_documented_reply() -> None:
    routed = {action for namespace in namespaces() for action in namespace.routes}
    assert routed == set(REPLIES)


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_an_event_carrying_the_wrong_shape_is_caught(name: str) -> None:
    with pytest.raises(ValueError, match="validation error"):
        check_event(name, {"unexpected": True})
