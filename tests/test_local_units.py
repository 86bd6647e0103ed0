"""Pieces of the local stack that a socket cannot easily reach: template reading, rule matching, frame limits,
IAM and SigV4 checks, the authorizer's output, and 410 timing."""

from __future__ import annotations

import asyncio
import base64
import copy
import struct

import pytest
from aiohttp.test_utils import TestClient, TestServer
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotocoreCredentials

from roomcast_local.authorizer import Malformed, Refused, authorized_context
from roomcast_local.callers import Callers
from roomcast_local.environment import (
    Credentials,
    Endpoints,
    deployed_names,
    function_arns,
    function_environment,
    worker_environment,
)
from roomcast_local.eventbridge import matches
from roomcast_local.events import Peer
from roomcast_local.frames import FrameScanner
from roomcast_local.iam import Statement, allows, function_statements
from roomcast_local.lambda_api import function_named
from roomcast_local.sigv4 import Request, SignatureError, signer_of
from roomcast_local.stack import LocalStack, StackConfig
from roomcast_local.template import function_definitions, load_template, websocket_api
from roomcast_local.websocket import Connection, State, new_connection_id
from roomcast_local.workers import Lambda

TEMPLATE = load_template()
METHOD_ARN = "arn:aws:execute-api:us-east-1:000000000000:local/local/$connect"


def test_routes_come_from_the_template() -> None:
    template = load_template()
    api = websocket_api(template)
    assert api.routes["message:send"].function == "ConversationsFunction"
    (route,) = [body for body in template["Resources"].values() if body.get("Properties", {}).get("RouteKey") == "ping"]
    route["Properties"]["RouteKey"] = "heartbeat"
    changed = websocket_api(template)
    assert "heartbeat" in changed.routes
    assert "ping" not in changed.routes
    assert changed.select('{"action": "ping"}') == "$default"


@pytest.mark.parametrize(
    ("body", "route"),
    [
        ('{"action": "message:send"}', "message:send"),
        ('{"action": "no-such-route"}', "$default"),
        ('{"action": "$connect"}', "$default"),
        ('{"action": 5}', "5"),
        ('{"action": true}', "true"),
        ('{"action": [5]}', "$default"),
        ('["message:send"]', "$default"),
        ("message:send", "$default"),
        ("", "$default"),
    ],
)
def test_route_selection_compares_the_action_as_a_string(body: str, route: str) -> None:
    """API Gateway evaluates the selection expression to a string: a number selects the route of its digits."""
    template = copy.deepcopy(TEMPLATE)
    for key in ("5", "true"):
        template["Resources"][f"Route{key}"] = {
            "Type": "AWS::ApiGatewayV2::Route",
            "Properties": {
                "ApiId": {"Ref": "WebSocketApi"},
                "RouteKey": key,
                "Target": "integrations/${DefaultIntegration}",
            },
        }
    assert websocket_api(template).select(body) == route


def test_each_function_has_its_own_environment() -> None:
    template = copy.deepcopy(TEMPLATE)
    variables = template["Resources"]["DefaultFunction"]["Properties"]["Environment"]["Variables"]
    variables.update(PEER={"Ref": "ConnectFunction"}, PEER_ARN={"Fn::GetAtt": ["ConnectFunction", "Arn"]})
    default = function_environment(template, "DefaultFunction")
    connect = function_environment(template, "ConnectFunction")
    assert default["CONNECTIONS_TABLE"] == connect["CONNECTIONS_TABLE"] == "ConnectionsTable"
    assert default["PEER"] == "ConnectFunction"
    assert default["PEER_ARN"] == "arn:aws:lambda:us-east-1:000000000000:function:ConnectFunction"
    assert "PEER" not in connect
    assert "JWT_SECRET_ARN" not in default  # a condition: unknowable locally


def test_a_worker_environment_holds_its_own_keys_and_nothing_of_the_developers_aws(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "production")
    keys = Credentials("ASIAEXAMPLE", "secret", "token")
    environment = worker_environment(
        TEMPLATE,
        "ConversationsFunction",
        endpoints=Endpoints("http://127.0.0.1:3001", "local", "http://127.0.0.1:5000"),
        credentials=keys,
        secret="s",
        verbose=False,
    )
    assert "AWS_PROFILE" not in environment
    assert environment["AWS_ACCESS_KEY_ID"] == "ASIAEXAMPLE"
    assert environment["MANAGEMENT_API_URL"] == "http://127.0.0.1:3001/local"
    assert environment["AWS_ENDPOINT_URL_LAMBDA"] == "http://127.0.0.1:3001"
    assert environment["AWS_LAMBDA_FUNCTION_NAME"] == "ConversationsFunction"


def test_function_timeouts_and_handlers_come_from_the_template() -> None:
    definitions = function_definitions(TEMPLATE)
    assert definitions["DefaultFunction"].handler == "handlers.default.handler"
    assert definitions["DefaultFunction"].timeout_seconds == 29


@pytest.mark.parametrize(
    ("pattern", "matched"),
    [
        ({"detail-type": ["Notify"]}, True),
        ({"detail-type": ["Emit", "Notify"]}, True),
        ({"detail-type": ["Emit"]}, False),
        ({"detail": {"companyId": ["acme"]}}, True),
        ({"detail": {"companyId": [{"prefix": "ac"}]}}, True),
        ({"detail": {"companyId": [{"anything-but": "acme"}]}}, False),
        ({"detail": {"userId": [{"exists": True}]}}, False),
        ({"detail": {"userId": [{"exists": False}]}}, True),
        ({"source": [{"suffix": ".crm"}]}, True),
    ],
)
def test_event_patterns(pattern: dict[str, object], matched: bool) -> None:
    event = {"detail-type": "Notify", "source": "billing.crm", "detail": {"companyId": "acme"}}
    assert matches(pattern, event) is matched


# ---- frames ----


def _frame(opcode: int, length: int, fin: bool = True) -> bytes:
    first = (0x80 if fin else 0) | opcode
    mask = b"\x01\x02\x03\x04"
    if length < 126:
        header = bytes([first, 0x80 | length])
    elif length < 65536:
        header = bytes([first, 0x80 | 126]) + struct.pack(">H", length)
    else:
        header = bytes([first, 0x80 | 127]) + struct.pack(">Q", length)
    return header + mask + b"x" * length


def test_a_single_frame_over_32_kib_is_caught_whatever_the_message() -> None:
    assert FrameScanner().oversized(_frame(0x1, 32 * 1024)) is False
    assert FrameScanner().oversized(_frame(0x1, 32 * 1024 + 1)) is True
    assert FrameScanner().oversized(_frame(0x0, 32 * 1024 + 1)) is True  # a continuation frame too


def test_frames_are_followed_across_reads_and_fragments() -> None:
    scanner = FrameScanner()
    stream = _frame(0x1, 20 * 1024, fin=False) + _frame(0x0, 20 * 1024, fin=False) + _frame(0x0, 20 * 1024)
    stream += _frame(0x9, 4) + _frame(0x1, 40 * 1024)  # a ping, then a frame too big
    chunks = [stream[i : i + 1000] for i in range(0, len(stream), 1000)]
    flagged = [scanner.oversized(chunk) for chunk in chunks]
    too_big_starts = len(stream) - len(_frame(0x1, 40 * 1024))
    assert flagged.index(True) == too_big_starts // 1000  # the fragmented 60 KiB message and the ping passed


# ---- IAM, SigV4 and the authorizer ----


def _manage(method: str) -> dict[str, object]:
    arn = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}/${StageName}"
    return {
        "Effect": "Allow",
        "Action": "execute-api:ManageConnections",
        "Resource": {"Fn::Sub": f"{arn}/{method}/@connections/*"},
    }


def test_policies_are_read_from_the_template_per_function_and_method() -> None:
    template = copy.deepcopy(TEMPLATE)
    functions = {"PostOnly": [_manage("POST")], "PostAndDelete": [_manage("POST"), _manage("DELETE")], "Nothing": []}
    for name, statements in functions.items():
        template["Resources"][name] = {
            "Type": "AWS::Serverless::Function",
            "Properties": {"Handler": "x.handler", "Policies": [{"Statement": statements}]},
        }
    resource = "arn:aws:execute-api:us-east-1:000000000000:local/local/{}/@connections/R0oXAdfD0kwCH6w="
    post_only, both, nothing = (function_statements(template, name, "local") for name in functions)
    assert allows(both, "execute-api:ManageConnections", resource.format("DELETE"))
    assert allows(post_only, "execute-api:ManageConnections", resource.format("POST"))
    assert not allows(post_only, "execute-api:ManageConnections", resource.format("DELETE"))
    assert not allows(nothing, "execute-api:ManageConnections", resource.format("POST"))
    other_stage = resource.format("POST").replace("/local/", "/prod/")
    assert not allows(both, "execute-api:ManageConnections", other_stage)


def test_an_explicit_deny_wins_and_wildcards_match() -> None:
    statements = [
        Statement("Allow", ("lambda:*",), ("arn:aws:lambda:*:*:function:Presence*",)),
        Statement("Deny", ("LAMBDA:InvokeFunction",), ("arn:aws:lambda:*:*:function:PresenceSecret",)),
    ]
    assert allows(statements, "lambda:InvokeFunction", "arn:aws:lambda:us-east-1:0:function:PresenceFunction")
    assert not allows(statements, "lambda:InvokeFunction", "arn:aws:lambda:us-east-1:0:function:PresenceSecret")
    assert not allows(statements, "lambda:InvokeFunction", "arn:aws:lambda:us-east-1:0:function:Other")


def test_the_sam_lambda_invoke_policy_template_is_understood() -> None:
    template = copy.deepcopy(TEMPLATE)
    policies = template["Resources"]["DisconnectFunction"]["Properties"]["Policies"]
    policies.append({"LambdaInvokePolicy": {"FunctionName": {"Ref": "SweepFunction"}}})
    statements = function_statements(template, "DisconnectFunction", "local")
    sweep = "arn:aws:lambda:us-east-1:000000000000:function:SweepFunction"
    assert allows(statements, "lambda:InvokeFunction", sweep)
    assert not allows(function_statements(TEMPLATE, "DisconnectFunction", "local"), "lambda:InvokeFunction", sweep)


def _signed(credentials: Credentials, body: bytes = b'{"x":1}') -> Request:
    url = "http://127.0.0.1:3001/local/%40connections/R0oXAdfD0kwCH6w%3D"
    request = AWSRequest(method="POST", url=url, data=body, headers={"Host": "127.0.0.1:3001"})
    keys = BotocoreCredentials(credentials.access_key_id, credentials.secret_access_key, credentials.session_token)
    SigV4Auth(keys, "execute-api", "us-east-1").add_auth(request)
    return Request("POST", url, dict(request.headers.items()), body)


def test_signatures_are_verified_for_the_keys_the_stack_gave_out() -> None:
    callers = Callers(TEMPLATE, "local", ["DefaultFunction"])
    keys = callers.credentials["DefaultFunction"]
    known = {keys.access_key_id: keys}
    assert signer_of(_signed(keys), "execute-api", known) == keys.access_key_id
    tampered = _signed(keys)
    tampered = Request(tampered.method, tampered.url, tampered.headers, b'{"x":2}')
    with pytest.raises(SignatureError) as bad:
        signer_of(tampered, "execute-api", known)
    assert bad.value.code == "InvalidSignatureException"
    with pytest.raises(SignatureError) as wrong_service:
        signer_of(_signed(keys), "lambda", known)
    assert wrong_service.value.code == "InvalidSignatureException"
    with pytest.raises(SignatureError) as unsigned:
        signer_of(Request("POST", tampered.url, {}, b""), "execute-api", known)
    assert unsigned.value.code == "MissingAuthenticationTokenException"
    developer = Credentials("AKIADEVELOPER", "whatever", "")
    assert signer_of(_signed(developer), "execute-api", known) == "AKIADEVELOPER"


def _output(
    context: dict[str, object], resource: str = "arn:aws:execute-api:us-east-1:000000000000:local/local/*"
) -> dict[str, object]:
    statement = {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": resource}
    return {
        "principalId": "u-1",
        "policyDocument": {"Version": "2012-10-17", "Statement": [statement]},
        "context": context,
    }


def test_authorizer_context_values_become_strings() -> None:
    context = authorized_context(
        _output({"exp": 1700000000, "admin": False, "ratio": 0.25, "userId": "u-1"}), METHOD_ARN
    )
    assert context == {"exp": "1700000000", "admin": "false", "ratio": "0.25", "userId": "u-1", "principalId": "u-1"}


def test_authorizer_output_is_refused_or_malformed_as_api_gateway_judges_it() -> None:
    with pytest.raises(Malformed):
        authorized_context(_output({"claims": {"role": "admin"}}), METHOD_ARN)
    with pytest.raises(Malformed):
        authorized_context(_output({"roles": ["a"]}), METHOD_ARN)
    with pytest.raises(Malformed):
        authorized_context({"policyDocument": {}}, METHOD_ARN)
    with pytest.raises(Refused):
        authorized_context(_output({}, "arn:aws:execute-api:us-east-1:000000000000:other-api/*"), METHOD_ARN)
    denied = _output({})
    denied["policyDocument"]["Statement"].append(  # type: ignore[index]
        {"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": METHOD_ARN}
    )
    with pytest.raises(Refused):
        authorized_context(denied, METHOD_ARN)


# ---- ids and names ----


def test_connection_ids_are_shaped_like_api_gateways() -> None:
    ids = {new_connection_id() for _ in range(200)}
    assert len(ids) == 200
    for connection_id in ids:
        assert len(connection_id) == 16
        assert connection_id.endswith("=")
        assert len(base64.urlsafe_b64decode(connection_id)) == 11


@pytest.mark.parametrize(
    ("name", "function"),
    [
        ("SweepFunction", "SweepFunction"),
        ("arn:aws:lambda:us-east-1:000000000000:function:SweepFunction", "SweepFunction"),
        ("arn:aws:lambda:us-east-1:000000000000:function:SweepFunction:$LATEST", "SweepFunction"),
        ("arn:aws:lambda:us-east-1:000000000000:function:SweepFunction:live", None),
        ("NoSuchFunction", None),
        ("roomcast-deferred", "DeferredFunction"),  # its FunctionName, as handlers name it
        ("DeferredFunction", None),  # a function with a FunctionName is not known by its logical id
    ],
)
def test_invoke_names_a_function_by_name_or_arn(name: str, function: str | None) -> None:
    assert function_named(name, deployed_names(TEMPLATE)) == function


# ---- @connections before $connect returns ----


def test_a_connection_is_gone_to_the_management_api_until_connect_returns() -> None:
    async def scenario() -> None:
        stack = LocalStack(StackConfig())
        app = stack.build_app(
            Lambda(
                stack.definitions,
                {name: {} for name in stack.definitions},
                function_arns(stack.template),
                1,
                serial=False,
            )
        )
        assert stack.websocket is not None
        peer = Peer("conn-1=", "127.0.0.1", None, "localhost", "local")
        stack.websocket.connections["conn-1="] = Connection(peer, state=State.CONNECTING)
        developer = Credentials("AKIADEVELOPER", "whatever", "")
        signed = _signed(developer)
        async with TestClient(TestServer(app)) as client:
            headers = {name: value for name, value in signed.headers.items() if name.lower() != "host"}
            posted = await client.post("/local/@connections/conn-1%3D", data=signed.body, headers=headers)
            assert posted.status == 410
            assert posted.headers["x-amzn-ErrorType"] == "GoneException"
            assert (await client.get("/local/@connections/conn-1%3D")).status == 403  # unsigned
            # A WebSocket endpoint, without the upgrade (a plain GET of `/` is the console's: docs/console.md).
            for path in ("/local", "/socket.io/"):
                assert (await client.get(path)).status == 426

    asyncio.run(scenario())


def test_a_stopping_stack_refuses_new_upgrades_so_reconnecting_clients_cannot_hold_it_open() -> None:
    async def scenario() -> None:
        stack = LocalStack(StackConfig())
        environments: dict[str, dict[str, str]] = {name: {} for name in stack.definitions}
        app = stack.build_app(Lambda(stack.definitions, environments, function_arns(stack.template), 1, serial=False))
        assert stack.websocket is not None
        upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}
        async with TestClient(TestServer(app)) as client:
            await stack.websocket.close_all()
            for path in ("/", "/socket.io/"):
                refused = await client.get(path, headers={**upgrade, "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
                assert refused.status == 503
            assert not stack.websocket.connections

    asyncio.run(scenario())


def test_a_variable_set_from_a_parameter_takes_the_developers_value() -> None:
    """`PRESENCE_GRACE_SECONDS=2 make run`: the template sets it from PresenceGraceSeconds, as a deploy would."""
    template = load_template()
    developer = {"PRESENCE_GRACE_SECONDS": "2", "DELAY_QUEUE_URL": "elsewhere", "CONNECTIONS_TABLE": "other"}
    environment = function_environment(template, "DisconnectFunction", "local", developer=developer)
    assert environment["PRESENCE_GRACE_SECONDS"] == "2"
    # What is not a parameter stays the template's: a queue and a table are the stack's own.
    assert environment["DELAY_QUEUE_URL"].endswith("/000000000000/DelayQueue")
    assert environment["CONNECTIONS_TABLE"] == "ConnectionsTable"
    assert function_environment(template, "DisconnectFunction", "local")["PRESENCE_GRACE_SECONDS"] == "30"
