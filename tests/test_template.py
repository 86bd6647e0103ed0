"""template.yaml agrees with the code and keeps its promises: routes, two-way replies, least privilege."""

from __future__ import annotations

import copy
import importlib
import os
import re
from datetime import date
from typing import Any

import pytest

from roomcast_local.environment import references, with_parameters
from roomcast_local.template import load_template, read_template, referenced_name, resources, websocket_api
from shared.protocol.publishing import DEFAULT_BUS
from shared.wiring.namespace import Namespace

TEMPLATE = load_template()
API = websocket_api(TEMPLATE)
FUNCTIONS = resources(TEMPLATE, "AWS::Serverless::Function")


# The routes module whose actions each handler module performs (`$default`: the common ones; it performs the others'
# only for Socket.IO messages and without a route per action).
ROUTES_OF_HANDLER = {"default": "common"}


def namespace_of(function: str) -> Namespace:
    """The Namespace whose actions the function's handler module performs: the one in its `shared.routes` module."""
    stem = FUNCTIONS[function]["Properties"]["Handler"].rsplit(".", 1)[0].removeprefix("handlers.")
    module = importlib.import_module(f"shared.routes.{ROUTES_OF_HANDLER.get(stem, stem)}")
    (namespace,) = [value for value in vars(module).values() if isinstance(value, Namespace)]
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


def unconditional(statement: dict[str, Any]) -> dict[str, Any]:
    """A statement present only under a condition (`!If [Cond, statement, !Ref AWS::NoValue]`), as granted."""
    if "Fn::If" in statement:
        granted: dict[str, Any] = statement["Fn::If"][1]
        return granted
    return statement


def statements(function: str) -> list[dict[str, Any]]:
    policies = FUNCTIONS[function]["Properties"].get("Policies", [])
    return [unconditional(statement) for policy in policies for statement in policy["Statement"]]


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
    # The authorizer reads one item per handshake, the user's access item (kick and revoke), and nothing else.
    reads = [statement for statement in statements("AuthorizerFunction") if "dynamodb" in str(statement)]
    assert reads == [
        {
            "Effect": "Allow",
            "Action": "dynamodb:GetItem",
            "Resource": {"Fn::GetAtt": ["ConnectionsTable", "Arn"]},
            "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["access#*"]}},
        }
    ]


def test_a_delay_queue_holds_no_longer_than_sqs_can_and_its_failures_are_kept() -> None:
    grace = TEMPLATE["Parameters"]["PresenceGraceSeconds"]
    assert (grace["Default"], grace["MinValue"], grace["MaxValue"]) == (30, 0, 900)
    queue = resources(TEMPLATE, "AWS::SQS::Queue")["DelayQueue"]["Properties"]
    (due,) = FUNCTIONS["DelayedFunction"]["Properties"]["Events"].values()
    assert due["Properties"]["Queue"] == {"Fn::GetAtt": ["DelayQueue", "Arn"]}
    assert due["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # Lambda asks for a visibility timeout of at least six times the function's timeout.
    assert queue["VisibilityTimeout"] >= 6 * FUNCTIONS["DelayedFunction"]["Properties"]["Timeout"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["DelayDeadLetterQueue", "Arn"]}


def test_api_gateway_may_invoke_only_from_this_api() -> None:
    permissions = resources(TEMPLATE, "AWS::Lambda::Permission")
    invoked = {referenced_name(body["Properties"]["FunctionName"]) for body in permissions.values()}
    # The alias each deploy publishes (decision 0051), which is what API Gateway invokes.
    routed = {route.function for route in API.routes.values()}
    assert invoked == {f"{function}Aliaslive" for function in ("AuthorizerFunction", *routed)}
    for body in permissions.values():
        assert "${WebSocketApi}" in body["Properties"]["SourceArn"]["Fn::Sub"]


def test_tables_are_on_demand_with_ttl_and_point_in_time_recovery_where_it_protects_something() -> None:
    for name, table in resources(TEMPLATE, "AWS::DynamoDB::Table").items():
        properties = table["Properties"]
        assert properties["BillingMode"] == "PAY_PER_REQUEST"
        assert properties["TimeToLiveSpecification"]["Enabled"] is True
        recovery = properties.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled", False)
        # Connections live two hours at most: a restore would bring back sockets that no longer exist; sessions
        # and their journals live the recovery window, and a restored one would replay what clients have.
        assert recovery is (name not in {"ConnectionsTable", "RecoveryTable"}), name


def test_the_stage_is_throttled_and_the_urls_are_output() -> None:
    (stage,) = resources(TEMPLATE, "AWS::ApiGatewayV2::Stage").values()
    settings = stage["Properties"]["DefaultRouteSettings"]
    assert {"ThrottlingRateLimit", "ThrottlingBurstLimit"} <= set(settings)
    assert {"WebSocketUrl", "ConnectionsUrl"} <= set(TEMPLATE["Outputs"])
    parameters = TEMPLATE["Parameters"]
    assert parameters["Runtime"]["Default"] == "python3.13"
    assert parameters["Architecture"]["Default"] == "arm64"


# ---- Deploy: what a first deploy and later updates depend on (docs/deploy.md) ----

# Lambda's runtime table (docs.aws.amazon.com/lambda/latest/dg/lambda-python.html): the dates from which
# creating, then updating, a function with the runtime is blocked.
LAMBDA_PYTHON_BLOCKED = {
    "python3.11": (date(2026, 7, 31), date(2026, 8, 31)),
    "python3.12": (date(2028, 11, 30), date(2029, 1, 10)),
    "python3.13": (date(2029, 7, 31), date(2029, 8, 31)),
}
# Names unique in an account and region, by the resource type that would create them.
ACCOUNT_WIDE_NAMES = {
    "AWS::Events::EventBus": "Name",
    "AWS::Serverless::LayerVersion": "LayerName",
    "AWS::Serverless::Function": "FunctionName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::SecretsManager::Secret": "Name",
}


def test_every_runtime_offered_is_one_lambda_still_creates_functions_with() -> None:
    runtime = TEMPLATE["Parameters"]["Runtime"]
    assert runtime["Default"] in runtime["AllowedValues"]
    for value in runtime["AllowedValues"]:
        create_blocked, _ = LAMBDA_PYTHON_BLOCKED[value]
        assert date.today() < create_blocked, f"Lambda no longer creates {value} functions"
    for layer in resources(TEMPLATE, "AWS::Serverless::LayerVersion").values():
        # Native wheels are built for one Python: the layer claims exactly that one.
        assert layer["Properties"]["CompatibleRuntimes"] == [{"Ref": "Runtime"}]
        assert layer["Metadata"]["BuildMethod"] == {"Ref": "Runtime"}


def test_names_are_derived_from_the_stack_so_two_stacks_share_an_account() -> None:
    for name, body in TEMPLATE["Resources"].items():
        key = ACCOUNT_WIDE_NAMES.get(body["Type"], "")
        if key in body.get("Properties", {}):
            assert "AWS::StackName" in str(body["Properties"][key]), name
    # SAM names a layer after its logical id when LayerName is absent: fixed, so it must be set.
    layers = resources(TEMPLATE, "AWS::Serverless::LayerVersion").values()
    assert all("LayerName" in layer["Properties"] for layer in layers)
    (bus,) = resources(TEMPLATE, "AWS::Events::EventBus").values()
    stack_unless_named = {"Fn::If": ["EventBusNamed", {"Ref": "EventBusName"}, {"Ref": "AWS::StackName"}]}
    assert bus["Properties"]["Name"] == stack_unless_named
    assert TEMPLATE["Parameters"]["EventBusName"]["Default"] == ""


def test_the_local_stack_names_its_bus_as_a_default_deploy_does() -> None:
    assert references(TEMPLATE)["EventBus"] == DEFAULT_BUS
    named = {**TEMPLATE, "Parameters": {**TEMPLATE["Parameters"], "EventBusName": {"Default": "crm-events"}}}
    assert references(named)["EventBus"] == "crm-events"


def test_urls_use_the_partitions_domain() -> None:
    subs = list(_strings_in(TEMPLATE, "Fn::Sub"))
    assert subs
    assert not [text for text in subs if "amazonaws.com" in text]
    urls = [TEMPLATE["Outputs"]["WebSocketUrl"]["Value"], TEMPLATE["Outputs"]["ConnectionsUrl"]["Value"]]
    urls.append(TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["MANAGEMENT_API_URL"])
    assert all("${AWS::URLSuffix}" in url["Fn::Sub"] for url in urls)


def _strings_in(node: Any, intrinsic: str) -> list[str]:
    if isinstance(node, dict):
        found = [node[intrinsic]] if isinstance(node.get(intrinsic), str) else []
        return found + [text for value in node.values() for text in _strings_in(value, intrinsic)]
    if isinstance(node, list):
        return [text for value in node for text in _strings_in(value, intrinsic)]
    return []


def test_data_tables_are_kept_except_when_their_own_creation_rolls_back() -> None:
    tables = resources(TEMPLATE, "AWS::DynamoDB::Table")
    kept = {name for name, body in tables.items() if body.get("DeletionPolicy") == "RetainExceptOnCreate"}
    assert kept == {"ConnectionsTable", "ConversationsTable", "NotificationsTable", "AnalyticsTable"}
    assert all(tables[name]["UpdateReplacePolicy"] == "Retain" for name in kept)


def test_the_secret_the_authorizer_reads_is_an_output() -> None:
    in_use = {"Fn::If": ["CreateJwtSecret", {"Ref": "JwtSecret"}, {"Ref": "JwtSecretArn"}]}
    assert TEMPLATE["Outputs"]["JwtSecretArn"]["Value"] == in_use
    for function in ("AuthorizerFunction", "DefaultFunction"):
        assert FUNCTIONS[function]["Properties"]["Environment"]["Variables"]["JWT_SECRET_ARN"] == in_use


def test_an_existing_secret_must_be_named_by_its_full_arn() -> None:
    pattern = TEMPLATE["Parameters"]["JwtSecretArn"]["AllowedPattern"]
    full = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:crm/jwt-Ab12Cd"
    assert re.fullmatch(pattern, "")
    assert re.fullmatch(pattern, full)
    assert re.fullmatch(pattern, full.replace("arn:aws:", "arn:aws-cn:"))
    for refused in ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:crm/jwt", "crm/jwt-Ab12Cd"):
        assert not re.fullmatch(pattern, refused), refused


def test_a_customer_managed_key_is_granted_decrypt_through_secrets_manager_only() -> None:
    pattern = TEMPLATE["Parameters"]["JwtSecretKmsKeyArn"]["AllowedPattern"]
    assert re.fullmatch(pattern, "")
    assert re.fullmatch(pattern, "arn:aws:kms:eu-west-1:123456789012:key/1a2b-3c4d")
    assert not re.fullmatch(pattern, "alias/crm")
    for function in ("AuthorizerFunction", "DefaultFunction"):
        policies = FUNCTIONS[function]["Properties"]["Policies"]
        (conditional,) = [s for policy in policies for s in policy["Statement"] if "Fn::If" in s]
        condition, statement, otherwise = conditional["Fn::If"]
        assert condition == "JwtSecretEncryptedWithKmsKey"
        assert otherwise == {"Ref": "AWS::NoValue"}
        assert statement["Action"] == "kms:Decrypt"
        assert statement["Resource"] == {"Ref": "JwtSecretKmsKeyArn"}
        via = statement["Condition"]["StringEquals"]["kms:ViaService"]["Fn::Sub"]
        assert via == "secretsmanager.${AWS::Region}.${AWS::URLSuffix}"


def test_an_empty_origin_list_is_refused_at_deploy_time() -> None:
    origins = TEMPLATE["Parameters"]["AllowedOrigins"]
    assert "Default" not in origins
    assert origins["MinLength"] == 1


def test_every_route_change_is_deployed_to_the_stage() -> None:
    assert resources(TEMPLATE, "AWS::ApiGatewayV2::Deployment") == {}
    (stage,) = resources(TEMPLATE, "AWS::ApiGatewayV2::Stage").values()
    assert stage["Properties"]["AutoDeploy"] is True


def test_the_stage_waits_for_every_route_and_route_response() -> None:
    """Created last, its first deployment has every route (decision 0071): the $ routes by DependsOn, the action
    routes (present only with RoutePerAction) by a conditional reference in its Metadata."""
    (stage,) = resources(TEMPLATE, "AWS::ApiGatewayV2::Stage").values()
    routing = {
        name
        for kind in ("AWS::ApiGatewayV2::Route", "AWS::ApiGatewayV2::RouteResponse")
        for name in resources(TEMPLATE, kind)
    }
    conditional = {name for name in routing if TEMPLATE["Resources"][name].get("Condition") == "RoutePerActionOn"}
    assert (
        set(stage["DependsOn"])
        == routing - conditional
        == {
            "ConnectRoute",
            "DisconnectRoute",
            "DefaultRoute",
            "DefaultRouteResponse",
        }
    )
    condition, referenced, otherwise = stage["Metadata"]["ActionRoutes"]["Fn::If"]
    assert (condition, otherwise) == ("RoutePerActionOn", {"Ref": "AWS::NoValue"})
    names = [reference["Ref"] for reference in referenced]
    assert len(names) == len(set(names))
    assert set(names) == conditional
    assert len(conditional) == 2 * len(read_template()["Mappings"]["RouteKeys"])


def test_every_action_route_is_two_way_and_generated_from_the_route_keys_mapping() -> None:
    raw = read_template()
    assert raw["Transform"][0] == "AWS::LanguageExtensions"
    written_out = {
        body["Properties"]["RouteKey"]
        for body in raw["Resources"].values()
        if "Type" in body and body["Type"] == "AWS::ApiGatewayV2::Route"
    }
    assert written_out == {"$connect", "$disconnect", "$default"}
    mapped = {entry["Key"] for entry in raw["Mappings"]["RouteKeys"].values()}
    actions = {key for key in API.routes if not key.startswith("$")}
    assert actions == mapped
    assert all(API.routes[key].two_way for key in actions)


def test_backend_events_are_retried_then_dead_lettered_with_an_alarm() -> None:
    queue = {"Fn::GetAtt": ["BackendEventsDeadLetterQueue", "Arn"]}
    backend = FUNCTIONS["BackendEventsFunction"]["Properties"]
    rules = [event["Properties"] for event in backend["Events"].values() if event["Type"] == "EventBridgeRule"]
    assert rules
    assert all(rule["DeadLetterConfig"] == {"Arn": queue} for rule in rules)
    assert all(rule["RetryPolicy"]["MaximumRetryAttempts"] > 0 for rule in rules)
    # EventBridge's retries cover delivery; a failure inside the function is Lambda's asynchronous retry.
    assert backend["EventInvokeConfig"]["DestinationConfig"]["OnFailure"] == {"Type": "SQS", "Destination": queue}
    (policy,) = resources(TEMPLATE, "AWS::SQS::QueuePolicy").values()
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Resource"] == queue
    assert "rule/${EventBus}/" in statement["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Sub"]
    assert_alarmed("BackendEventsDeadLetterQueue")


def assert_alarmed(queue: str) -> None:
    """An alarm fires as soon as the queue holds anything."""
    alarms = [
        alarm["Properties"]
        for alarm in resources(TEMPLATE, "AWS::CloudWatch::Alarm").values()
        if alarm["Properties"]["Dimensions"][0]["Value"] == {"Fn::GetAtt": [queue, "QueueName"]}
    ]
    assert len(alarms) == 1
    assert alarms[0]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarms[0]["Threshold"] == 0
    assert alarms[0]["ComparisonOperator"] == "GreaterThanThreshold"


def test_deferred_work_that_fails_for_good_is_dead_lettered_with_an_alarm() -> None:
    deferred = FUNCTIONS["DeferredFunction"]["Properties"]
    queue = {"Fn::GetAtt": ["DeferredDeadLetterQueue", "Arn"]}
    assert deferred["EventInvokeConfig"]["DestinationConfig"]["OnFailure"] == {"Type": "SQS", "Destination": queue}
    assert deferred["EventInvokeConfig"]["MaximumRetryAttempts"] == 2
    assert_alarmed("DeferredDeadLetterQueue")


def transformed(**parameters: str) -> dict[str, Any]:
    """The template as CloudFormation's SAM transform expands it for these parameter values."""
    from samtranslator.translator.transform import transform  # type: ignore[import-untyped]

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    template = copy.deepcopy(TEMPLATE)
    template["Globals"]["Function"]["CodeUri"] = "s3://bucket/src.zip"  # as `sam deploy` uploads them
    for layer in resources(template, "AWS::Serverless::LayerVersion").values():
        layer["Properties"]["ContentUri"] = "s3://bucket/layer.zip"
    values = {"AllowedOrigins": "*", "AWS::Region": "us-east-1", **parameters}
    expanded: dict[str, Any] = transform(template, values, NoManagedPolicies())
    return expanded


@pytest.mark.parametrize("tracing", ["Disabled", "Active"])
def test_x_ray_permissions_and_sdk_only_when_tracing_is_on(tracing: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    expanded = transformed(Tracing=tracing)
    roles = [body for body in expanded["Resources"].values() if body["Type"] == "AWS::IAM::Role"]
    xray = [role for role in roles if "AWSXrayWriteOnlyAccess" in str(role["Properties"]["ManagedPolicyArns"])]
    assert len(xray) == (len(roles) if tracing == "Active" else 0)
    layers = TEMPLATE["Globals"]["Function"]["Layers"]
    tracing_layer = {"Fn::If": ["TracingOn", {"Ref": "TracingLayer"}, {"Ref": "AWS::NoValue"}]}
    assert layers == [{"Ref": "DependenciesLayer"}, tracing_layer]
    assert resources(TEMPLATE, "AWS::Serverless::LayerVersion")["TracingLayer"]["Condition"] == "TracingOn"


def test_the_function_may_send_its_failures_to_the_dead_letter_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    role = transformed(Tracing="Disabled")["Resources"]["BackendEventsFunctionRole"]["Properties"]
    granted = [statement for policy in role["Policies"] for statement in policy["PolicyDocument"]["Statement"]]
    queue = {"Fn::GetAtt": ["BackendEventsDeadLetterQueue", "Arn"]}
    assert {"Action": "sqs:SendMessage", "Effect": "Allow", "Resource": queue} in granted


@pytest.mark.parametrize("snapstart", ["false", "true"])
def test_snapstart_is_a_parameter_off_by_default_and_the_api_invokes_what_it_snapshots(
    snapstart: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert TEMPLATE["Parameters"]["SnapStart"]["Default"] == "false"
    expanded = transformed(SnapStart=snapstart)["Resources"]
    condition = expanded["ConnectFunction"]["Properties"]["SnapStart"]["ApplyOn"]["Fn::If"]
    assert condition == ["SnapStartOn", "PublishedVersions", "None"]
    assert TEMPLATE["Conditions"]["SnapStartOn"] == {"Fn::Equals": [{"Ref": "SnapStart"}, "true"]}
    # SnapStart applies to published versions: every function API Gateway invokes is invoked through its alias.
    aliases = {name for name, body in expanded.items() if body["Type"] == "AWS::Lambda::Alias"}
    invoked = {"AuthorizerFunction", *(route.function for route in API.routes.values())}
    assert aliases == {f"{function}Aliaslive" for function in invoked}
    uris = [
        body["Properties"]["IntegrationUri"]["Fn::Sub"]
        for name, body in expanded.items()
        if name.endswith("Integration")
    ]
    assert uris
    assert all("Aliaslive}" in uri for uri in uris)


# ---- The template as CloudFormation runs it: AWS::LanguageExtensions first (with the parameter values it is
# given), then SAM. SAM CLI 1.170 carries AWS's own port of the language extensions (samcli.lib.cfn_language_
# extensions), which resolves every intrinsic it can (Ref to a parameter, Fn::If of a known condition) before SAM
# hashes a function's properties into its version's logical id (SAM issues 1724, 1859). ----

LAYER_CONTENT = "s3://bucket/layer.zip"


def as_cloudformation(layer_content: str = LAYER_CONTENT, **parameters: str) -> dict[str, Any]:
    """What CloudFormation would create for these parameter values: a `sam deploy` of code at fixed locations, the
    dependencies layer's content at `layer_content` (its S3 key changes with its content)."""
    from samcli.lib.cfn_language_extensions.api import process_template  # type: ignore[import-untyped]
    from samcli.lib.cfn_language_extensions.models import PseudoParameterValues  # type: ignore[import-untyped]
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    raw = read_template()
    raw["Globals"]["Function"]["CodeUri"] = "s3://bucket/src.zip"
    raw["Resources"]["DependenciesLayer"]["Properties"]["ContentUri"] = layer_content
    raw["Resources"]["TracingLayer"]["Properties"]["ContentUri"] = "s3://bucket/tracing.zip"
    values = {"AllowedOrigins": "*", **parameters}
    pseudo = PseudoParameterValues(region="us-east-1", account_id="123456789012", stack_name="roomcast")
    extended = process_template(raw, values, pseudo)
    assert not [key for key in extended["Resources"] if key.startswith("Fn::ForEach")]
    translated: dict[str, Any] = transform(extended, {**values, "AWS::Region": "us-east-1"}, NoManagedPolicies())
    # CloudFormation then creates only the resources whose condition holds.
    return with_parameters(translated, {name: value for name, value in values.items() if name != "AllowedOrigins"})


def versions(template: dict[str, Any]) -> dict[str, str]:
    """Each function's published version logical id (`XFunctionVersion<hash>`), by function."""
    return {
        name.split("Version", 1)[0]: name
        for name, body in template["Resources"].items()
        if body["Type"] == "AWS::Lambda::Version"
    }


@pytest.fixture(scope="module")
def default_versions() -> dict[str, str]:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return versions(as_cloudformation())


def test_every_aliased_function_publishes_on_any_property_change() -> None:
    aliased = {name for name, body in FUNCTIONS.items() if "AutoPublishAlias" in body["Properties"]}
    assert aliased == {"AuthorizerFunction", *(route.function for route in API.routes.values())}
    assert all(FUNCTIONS[name]["Properties"]["AutoPublishAliasAllProperties"] is True for name in aliased)
    # SAM adds a layer's properties to the hash only for a layer that asks for it.
    assert all(
        layer["Properties"]["PublishLambdaVersion"] is True
        for layer in resources(TEMPLATE, "AWS::Serverless::LayerVersion").values()
    )


@pytest.mark.parametrize(
    "change",
    [
        {"Runtime": "python3.12"},
        {"Architecture": "x86_64"},
        {"layer_content": "s3://bucket/layer-with-new-dependencies.zip"},
        {"Tracing": "Active"},
        {"SnapStart": "true"},
    ],
    ids=["runtime", "architecture", "layer", "tracing", "snapstart"],
)
def test_a_change_the_alias_must_follow_publishes_a_new_version_of_every_function(
    change: dict[str, str], default_versions: dict[str, str]
) -> None:
    """The alias `live` the API invokes moves only when SAM publishes a version: each of these changes what runs."""
    changed = versions(as_cloudformation(**change))
    assert (
        set(changed)
        == set(default_versions)
        == {name for name in FUNCTIONS if "AutoPublishAlias" in FUNCTIONS[name]["Properties"]}
    )
    assert [name for name in changed if changed[name] == default_versions[name]] == []


def test_a_change_no_function_sees_publishes_nothing(default_versions: dict[str, str]) -> None:
    assert versions(as_cloudformation(ThrottlingRateLimit="50", RoutePerAction="false")) == default_versions


@pytest.mark.parametrize("route_per_action", ["true", "false"])
def test_route_per_action_false_leaves_only_the_dollar_routes_and_the_stage_waits_for_what_exists(
    route_per_action: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert TEMPLATE["Parameters"]["RoutePerAction"]["Default"] == "true"
    created = as_cloudformation(RoutePerAction=route_per_action)["Resources"]
    routes = {body["Properties"]["RouteKey"] for body in created.values() if body["Type"] == "AWS::ApiGatewayV2::Route"}
    responses = {name for name, body in created.items() if body["Type"] == "AWS::ApiGatewayV2::RouteResponse"}
    stage = created["Stage"]
    waited = set(stage["DependsOn"]) | {ref["Ref"] for ref in stage.get("Metadata", {}).get("ActionRoutes", [])}
    route_names = {name for name, body in created.items() if body["Type"] == "AWS::ApiGatewayV2::Route"}
    assert waited == route_names | responses
    if route_per_action == "false":
        assert routes == {"$connect", "$disconnect", "$default"}
        assert responses == {"DefaultRouteResponse"}
        assert "ActionRoutes" not in stage.get("Metadata", {})
    else:
        assert routes == set(API.routes)


def test_the_local_stack_reads_route_per_action() -> None:
    without = websocket_api(with_parameters(TEMPLATE, {"RoutePerAction": "false"}))
    assert set(without.routes) == {"$connect", "$disconnect", "$default"}
    assert without.routes["$default"].function == "DefaultFunction"
    assert set(websocket_api(with_parameters(TEMPLATE, {})).routes) == set(API.routes)
    with pytest.raises(ValueError, match="RoutePerAction must be one of true, false"):
        with_parameters(TEMPLATE, {"RoutePerAction": "no"})
    with pytest.raises(ValueError, match="no parameter 'RoutesPerAction'"):
        with_parameters(TEMPLATE, {"RoutesPerAction": "false"})


def test_the_broadcast_functions_reservation_is_a_parameter_an_account_with_a_reduced_quota_turns_off() -> None:
    """Lambda refuses a reservation that leaves an account's unreserved concurrency under 100 (or under a new
    account's reduced quota); the event source's MaximumConcurrency caps broadcasts' executions either way."""
    parameter = TEMPLATE["Parameters"]["ReserveBroadcastConcurrency"]
    assert (parameter["Default"], parameter["AllowedValues"]) == ("true", ["true", "false"])
    assert TEMPLATE["Conditions"]["BroadcastConcurrencyReserved"] == {
        "Fn::Equals": [{"Ref": "ReserveBroadcastConcurrency"}, "true"]
    }
    broadcast = FUNCTIONS["BroadcastFunction"]["Properties"]
    assert broadcast["ReservedConcurrentExecutions"] == {
        "Fn::If": ["BroadcastConcurrencyReserved", {"Ref": "BroadcastConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    assert broadcast["Events"]["Broadcasts"]["Properties"]["ScalingConfig"] == {
        "MaximumConcurrency": {"Ref": "BroadcastConcurrency"}
    }
    assert FUNCTIONS["BroadcastFunction"].get("Condition") is None
