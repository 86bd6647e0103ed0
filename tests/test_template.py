"""template.yaml agrees with the code and keeps its promises: routes, two-way replies, least privilege."""

from __future__ import annotations

import importlib
from typing import Any

from roomcast_local.invoke import load_handler
from roomcast_local.template import load_template, resources, websocket_api
from shared.app import Namespace

TEMPLATE = load_template()
API = websocket_api(TEMPLATE)
FUNCTIONS = resources(TEMPLATE, "AWS::Serverless::Function")


def namespace_of(function: str) -> Namespace:
    """The Namespace whose lambda_handler is the function's handler."""
    handler = load_handler(FUNCTIONS[function]["Properties"]["Handler"])
    module = importlib.import_module(FUNCTIONS[function]["Properties"]["Handler"].rsplit(".", 1)[0])
    (namespace,) = [value for value in vars(module).values() if isinstance(value, Namespace)]
    assert namespace.lambda_handler is handler
    return namespace


def test_every_routed_action_has_a_handler_and_every_handler_a_route() -> None:
    routed: dict[str, set[str]] = {}
    for route in API.routes.values():
        if not route.route_key.startswith("$"):
            routed.setdefault(route.function, set()).add(route.route_key)
    for function, keys in routed.items():
        assert set(namespace_of(function).routes) == keys, function


def test_lifecycle_routes_and_the_authorizer() -> None:
    assert API.selection_expression == "$request.body.action"
    assert {"$connect", "$disconnect", "$default"} <= set(API.routes)
    (connect,) = [
        body
        for body in resources(TEMPLATE, "AWS::ApiGatewayV2::Route").values()
        if body["Properties"]["RouteKey"] == "$connect"
    ]
    assert connect["Properties"]["AuthorizationType"] == "CUSTOM"
    assert API.authorizer_function == "AuthorizerFunction"


def test_every_action_route_answers_its_caller() -> None:
    for route in API.routes.values():
        assert route.two_way == (route.route_key not in {"$connect", "$disconnect"}), route


def statements(function: str) -> list[dict[str, Any]]:
    policies = FUNCTIONS[function]["Properties"].get("Policies", [])
    return [statement for policy in policies for statement in policy["Statement"]]


def test_functions_have_least_privilege() -> None:
    for function in FUNCTIONS:
        for statement in statements(function):
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert all("*" not in action for action in actions), (function, actions)
            assert "dynamodb:Scan" not in actions
            assert statement["Resource"] != "*"
            if "execute-api:ManageConnections" in actions:
                targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                assert all("${WebSocketApi}/${StageName}/" in target["Fn::Sub"] for target in targets)
    assert all("dynamodb" not in str(statement) for statement in statements("AuthorizerFunction"))


def test_api_gateway_may_invoke_only_from_this_api() -> None:
    permissions = resources(TEMPLATE, "AWS::Lambda::Permission")
    invoked = {body["Properties"]["FunctionName"]["Ref"] for body in permissions.values()}
    assert invoked == {"AuthorizerFunction", *(route.function for route in API.routes.values())}
    for body in permissions.values():
        assert "${WebSocketApi}" in body["Properties"]["SourceArn"]["Fn::Sub"]


def test_tables_are_on_demand_with_ttl_and_point_in_time_recovery() -> None:
    for table in resources(TEMPLATE, "AWS::DynamoDB::Table").values():
        properties = table["Properties"]
        assert properties["BillingMode"] == "PAY_PER_REQUEST"
        assert properties["TimeToLiveSpecification"]["Enabled"] is True
        assert properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_the_stage_is_throttled_and_the_urls_are_output() -> None:
    (stage,) = resources(TEMPLATE, "AWS::ApiGatewayV2::Stage").values()
    settings = stage["Properties"]["DefaultRouteSettings"]
    assert {"ThrottlingRateLimit", "ThrottlingBurstLimit"} <= set(settings)
    assert {"WebSocketUrl", "ConnectionsUrl"} <= set(TEMPLATE["Outputs"])
    parameters = TEMPLATE["Parameters"]
    assert parameters["Runtime"]["Default"] == "python3.13"
    assert parameters["Architecture"]["Default"] == "arm64"
