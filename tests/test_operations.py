"""The dashboard and the alarms in template.yaml watch what exists: metrics the code emits under the names and
namespace it emits them with, every function, every dead-letter queue, and the runbook explains each alarm."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

from roomcast_local.template import load_template, resources

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = load_template()
ALARMS = resources(TEMPLATE, "AWS::CloudWatch::Alarm")
FUNCTIONS = resources(TEMPLATE, "AWS::Serverless::Function")
QUEUES = resources(TEMPLATE, "AWS::SQS::Queue")
RUNBOOK = (ROOT / "docs" / "operations.md").read_text()


def emitted_metrics(source: Path = ROOT / "src") -> set[str]:
    """Every name given to `metrics.add_metric(name=...)` under `source`, read from the code itself, and the names
    in the tables of names a call picks from (a dict of status -> metric name)."""
    names: set[str] = set()
    for path in source.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_metric":
                (name,) = [keyword.value for keyword in node.keywords if keyword.arg == "name"]
                if isinstance(name, ast.Constant):
                    names.add(str(name.value))
                else:
                    names |= _names_it_may_take(tree, name)
    return names


def _names_it_may_take(tree: ast.Module, name: ast.expr) -> set[str]:
    """A name that is a variable: it comes from a module-level table `NAME = {...: "Metric"}`."""
    tables = {
        target.id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    taken = {
        str(value.value)
        for table in tables.values()
        for value in table.values
        if isinstance(value, ast.Constant) and isinstance(value.value, str) and value.value[:1].isupper()
    }
    assert taken, f"a metric name at line {name.lineno} comes from no table of names"
    return taken


def powertools_metrics() -> tuple[str, str]:
    """The namespace and service dimension of the one Metrics object (shared/observability.py)."""
    tree = ast.parse((ROOT / "src" / "shared" / "observability.py").read_text())
    (call,) = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Metrics"
    ]
    given = {keyword.arg: keyword.value for keyword in call.keywords}
    namespace, service = given["namespace"], given["service"]
    assert isinstance(namespace, ast.Constant)
    assert isinstance(service, ast.Constant)
    return str(namespace.value), str(service.value)


def dashboard_metrics() -> list[list[Any]]:
    """Each metric row of the dashboard: [namespace, name, dimension, value, ..., {options}?]."""
    (dashboard,) = resources(TEMPLATE, "AWS::CloudWatch::Dashboard").values()
    body = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    # ${X} and ${X.Attr} are CloudFormation's; as JSON they are strings like any other.
    parsed = json.loads(re.sub(r"\$\{([^}]+)\}", r"<\1>", body))
    return [row for widget in parsed["widgets"] for row in widget["properties"]["metrics"]]


def dimensions(row: list[Any]) -> dict[str, str]:
    values = [value for value in row[2:] if isinstance(value, str)]
    return dict(zip(values[::2], values[1::2], strict=True))


def test_the_code_emits_under_the_namespace_the_template_gives_powertools() -> None:
    namespace, service = powertools_metrics()
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert (variables["POWERTOOLS_METRICS_NAMESPACE"], variables["POWERTOOLS_SERVICE_NAME"]) == (namespace, service)


def test_every_custom_metric_on_the_dashboard_is_one_the_code_emits() -> None:
    namespace, service = powertools_metrics()
    emitted = emitted_metrics()
    custom = [row for row in dashboard_metrics() if row[0] == namespace]
    assert len(custom) >= 10
    for row in custom:
        assert row[1] in emitted, f"the dashboard shows {row[1]}, which no add_metric emits"
        assert dimensions(row) == {"service": service}, row
    shown = {row[1] for row in custom}
    # What the issue asked to see: messages, connections, and posts with their 410, 429 and 5xx outcomes.
    posts = {"FanoutRecipients", "GoneConnections", "PostsThrottled", "PostsServerErrors"}
    assert {"Messages", "Connections", *posts} <= shown


def test_every_custom_metric_an_alarm_watches_is_one_the_code_emits() -> None:
    namespace, service = powertools_metrics()
    custom = [alarm["Properties"] for alarm in ALARMS.values() if alarm["Properties"]["Namespace"] == namespace]
    assert {alarm["MetricName"] for alarm in custom} == {"PostsThrottled", "FanoutFailures"}
    for alarm in custom:
        assert alarm["MetricName"] in emitted_metrics()
        assert alarm["Dimensions"] == [{"Name": "service", "Value": service}]


def test_the_reading_of_the_code_sees_constant_names_and_names_from_a_table(tmp_path: Path) -> None:
    """What the two tests above rely on: a metric renamed in the code is no longer in the emitted set."""
    (tmp_path / "m.py").write_text(
        'NAMES = {429: "Throttled", 500: "ServerErrors"}\nmetrics.add_metric(name="Sent", unit=1, value=1)\n'
        "metrics.add_metric(name=NAMES[status], unit=1, value=1)\n"
    )
    assert emitted_metrics(tmp_path) == {"Sent", "Throttled", "ServerErrors"}
    (tmp_path / "m.py").write_text('metrics.add_metric(name="Delivered", unit=1, value=1)\n')
    assert emitted_metrics(tmp_path) == {"Delivered"}


def test_every_function_has_error_and_throttle_alarms_and_dashboard_lines() -> None:
    for kind in ("Errors", "Throttles"):
        watched = {
            alarm["Properties"]["Dimensions"][0]["Value"]["Fn::Sub"].strip("${}")
            for alarm in ALARMS.values()
            if alarm["Properties"]["Namespace"] == "AWS/Lambda" and alarm["Properties"]["MetricName"] == kind
        }
        assert watched == set(FUNCTIONS), kind
    rows = dashboard_metrics()
    for kind in ("Errors", "Throttles", "Duration"):
        shown = {dimensions(row)["FunctionName"].strip("<>") for row in rows if row[:2] == ["AWS/Lambda", kind]}
        assert shown == set(FUNCTIONS), kind


def test_every_queue_is_alarmed_and_shown() -> None:
    alarmed = {
        alarm["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for alarm in ALARMS.values()
        if alarm["Properties"]["Namespace"] == "AWS/SQS"
    }
    shown = {
        dimensions(row)["QueueName"].strip("<>").removesuffix(".QueueName")
        for row in dashboard_metrics()
        if row[0] == "AWS/SQS"
    }
    assert alarmed == shown == set(QUEUES)


def test_the_api_alarms_watch_this_stage() -> None:
    api = [alarm["Properties"] for alarm in ALARMS.values() if alarm["Properties"]["Namespace"] == "AWS/ApiGateway"]
    assert {alarm["MetricName"] for alarm in api} == {"ExecutionError", "IntegrationError"}
    for alarm in api:
        assert alarm["Dimensions"] == [
            {"Name": "ApiId", "Value": {"Ref": "WebSocketApi"}},
            {"Name": "Stage", "Value": {"Ref": "StageName"}},
        ]


def test_every_alarm_notifies_the_topic_and_its_runbook_section_exists() -> None:
    notify = {"Fn::If": ["AlarmTopicGiven", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    headings = set(re.findall(r"^#+ (.+)$", RUNBOOK, re.MULTILINE))
    for name, alarm in ALARMS.items():
        properties = alarm["Properties"]
        assert properties["AlarmActions"] == notify, name
        assert properties["TreatMissingData"] == "notBreaching", name
        description = properties["AlarmDescription"]
        text = description["Fn::Sub"] if isinstance(description, dict) else description
        section = re.search(r"docs/operations\.md, (.+)$", text)
        assert section is not None, (name, text)
        assert section.group(1) in headings, (name, section.group(1))
