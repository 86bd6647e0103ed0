"""The local stack's reading of Fn::ForEach and Fn::FindInMap, as CloudFormation's LanguageExtensions expand them."""

from __future__ import annotations

from typing import Any

import pytest

from roomcast_local.template import expand_language_extensions


def _template(resources: dict[str, Any], **sections: Any) -> dict[str, Any]:
    return {"Transform": ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"], "Resources": resources, **sections}


def test_a_loop_generates_one_fragment_per_item_with_the_identifier_replaced_in_keys_values_and_refs() -> None:
    expanded = expand_language_extensions(
        _template(
            {
                "Fn::ForEach::Topics": [
                    "Name",
                    ["Alpha", "Beta"],
                    {
                        "${Name}Topic": {
                            "Type": "AWS::SNS::Topic",
                            "Properties": {"TopicName": {"Ref": "Name"}, "Display": {"Fn::Sub": "${${Name}Queue.Arn}"}},
                        }
                    },
                ],
                "Kept": {"Type": "AWS::SQS::Queue"},
            }
        )
    )
    assert expanded["Transform"] == ["AWS::Serverless-2016-10-31"]
    assert expanded["Resources"] == {
        "AlphaTopic": {
            "Type": "AWS::SNS::Topic",
            "Properties": {"TopicName": "Alpha", "Display": {"Fn::Sub": "${AlphaQueue.Arn}"}},
        },
        "BetaTopic": {
            "Type": "AWS::SNS::Topic",
            "Properties": {"TopicName": "Beta", "Display": {"Fn::Sub": "${BetaQueue.Arn}"}},
        },
        "Kept": {"Type": "AWS::SQS::Queue"},
    }


def test_nested_loops_and_the_alphanumeric_form_of_an_item() -> None:
    expanded = expand_language_extensions(
        _template(
            {
                "Fn::ForEach::Outer": [
                    "Kind",
                    ["A", "B"],
                    {"Fn::ForEach::Inner": ["Key", ["x:1", "y:2"], {"${Kind}&{Key}": {"Type": "T", "Key": "${Key}"}}]},
                ]
            }
        )
    )
    assert expanded["Resources"] == {
        "Ax1": {"Type": "T", "Key": "x:1"},
        "Ay2": {"Type": "T", "Key": "y:2"},
        "Bx1": {"Type": "T", "Key": "x:1"},
        "By2": {"Type": "T", "Key": "y:2"},
    }


def test_find_in_map_with_a_loop_identifier_is_resolved() -> None:
    expanded = expand_language_extensions(
        _template(
            {
                "Fn::ForEach::Routes": [
                    "Route",
                    ["Ping"],
                    {"${Route}Route": {"Type": "R", "Key": {"Fn::FindInMap": ["Keys", {"Ref": "Route"}, "Key"]}}},
                ]
            },
            Mappings={"Keys": {"Ping": {"Key": "ping"}}},
        )
    )
    assert expanded["Resources"] == {"PingRoute": {"Type": "R", "Key": "ping"}}


def test_a_template_without_the_transform_is_left_as_it_is() -> None:
    template = {"Transform": "AWS::Serverless-2016-10-31", "Resources": {"Fn::ForEach::X": ["I", ["a"], {}]}}
    assert expand_language_extensions(template) is template


@pytest.mark.parametrize(
    ("loop", "error"),
    [
        (["Name", {"Ref": "Names"}, {"${Name}": {}}], "literal list"),
        (["Name", ["A", "A"], {"${Name}Topic": {}}], "twice"),
    ],
)
def test_what_the_reader_does_not_understand_is_refused(loop: list[Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        expand_language_extensions(_template({"Fn::ForEach::Loop": loop}))
