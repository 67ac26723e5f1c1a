"""Template reading: short tags, intrinsics, Globals merge, conditions, layers, events."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from devserver.http_api import HttpApi
from devserver.intrinsics import load_yaml
from devserver.scheduler import Cron, parse_rate
from devserver.template import HttpRoute, WsApiSpec, load_model
from devserver.websocket_api import WebSocketApi

from .conftest import FIXTURES, TEMPLATE


def test_short_tags_load_as_long_form() -> None:
    data = load_yaml("a: !Ref X\nb: !GetAtt Fn.Arn\nc: !Sub [ '${A}', {A: 1} ]\nd: !If [C, 1, 2]\n")
    assert data == {
        "a": {"Ref": "X"},
        "b": {"Fn::GetAtt": ["Fn", "Arn"]},
        "c": {"Fn::Sub": ["${A}", {"A": 1}]},
        "d": {"Fn::If": ["C", 1, 2]},
    }


def test_model_functions_globals_and_intrinsics() -> None:
    m = load_model(TEMPLATE, {"RecordDir": "/tmp/x"})
    assert "ProdOnly" not in m.functions  # Condition IsProd is false
    echo = m.functions["Echo"]
    assert echo.handler == "app.echo" and echo.code_dir == (FIXTURES / "app").resolve()
    assert echo.memory_mb == 256 and echo.timeout == 5  # FindInMap + Globals
    env = echo.environment
    assert env["GLOBAL_VAR"] == "global" and env["OVERRIDDEN"] == "from-function"
    assert env["RECORD_DIR"] == "/tmp/x"
    assert env["SUB_VAR"] == "us-east-1-test-123456789012"
    assert env["IF_VAR"] == "dev-value"
    assert env["ECHO_ARN"] == "arn:aws:lambda:us-east-1:123456789012:function:Echo"
    assert env["JOINED"] == "a-y"
    assert env["DB_HOST"] and env["SECRET_ARN"]  # unknown resources -> placeholders, no crash
    assert echo.layer_dirs == [(FIXTURES / "layer").resolve()]
    failer = m.functions["Failer"]
    assert failer.max_retries == 1 and failer.on_failure == "Recorder"
    assert m.schedules[0].expression == "rate(1 second)"


def test_prod_condition_via_parameter_override() -> None:
    m = load_model(TEMPLATE, {"Stage": "prod"})
    assert "ProdOnly" in m.functions and "Ticker" not in m.functions
    assert m.functions["Echo"].environment["IF_VAR"] == "prod-value"


def test_websocket_model() -> None:
    (ws,) = load_model(TEMPLATE).ws_apis
    assert ws.selection_expression == "$request.body.meta.action" and ws.stage == "dev"
    assert ws.routes == {
        "$connect": "WsConnect",
        "$disconnect": "WsDisconnect",
        "echo": "WsEcho",
        "callback": "WsCallback",
        "$default": "WsEcho",
    }
    assert ws.two_way == {"echo", "$default"}


def test_unresolvable_values_never_crash(tmp_path: Path) -> None:
    tpl = tmp_path / "template.yaml"
    tpl.write_text(
        "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      Handler: a.b\n"
        "      Environment:\n        Variables:\n          A: !Ref Nope\n          B: !GetAtt Nope.Thing\n"
        "          C: !Select [5, [1]]\n          D: !ImportValue shared-thing\n          E: !FindInMap [M, a, b]\n"
        "          F: !Sub '${Nope.Attr}-${AWS::StackName}'\n"
    )
    env = load_model(tpl).functions["F"].environment
    assert all(isinstance(v, str) and v for v in env.values())
    assert env["F"].endswith("-local")


def test_route_priority() -> None:
    routes = [
        HttpRoute("a", k, k.split(" ")[0], k.split(" ")[1] if " " in k else k, k)
        for k in ("ANY /{proxy+}", "GET /items/{id}", "ANY /items/special", "GET /items/special", "$default")
    ]
    api = HttpApi(None, {}, routes)  # type: ignore[arg-type]
    assert api.match("GET", "/items/special")[0].route_key == "GET /items/special"  # type: ignore[index]
    assert api.match("POST", "/items/special")[0].route_key == "ANY /items/special"  # type: ignore[index]
    route, params = api.match("GET", "/items/a%2Fb")  # type: ignore[misc]
    assert route.route_key == "GET /items/{id}" and params == {"id": "a/b"}
    assert api.match("GET", "/x/y/z")[0].route_key == "ANY /{proxy+}"  # type: ignore[index]
    assert api.match("GET", "/")[0].route_key == "$default"  # type: ignore[index]


def test_ws_route_selection_without_default() -> None:
    ws = WebSocketApi(None, WsApiSpec("W", "id", "$request.body.a.b", routes={"x": "F"}))  # type: ignore[arg-type]
    assert ws._route_for('{"a": {"b": "x"}}') == "x"
    assert ws._route_for('{"a": {"b": "y"}}') is None
    assert ws._route_for("not json") is None


def test_schedule_expressions() -> None:
    assert parse_rate("rate(5 minutes)") == 300 and parse_rate("rate(1 second)") == 1
    c = Cron("cron(0/15 10 ? * MON-FRI *)")
    t = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)  # a Saturday
    assert c.next_after(t) == datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    assert c.next_after(datetime(2026, 11, 23, 10, 0, tzinfo=UTC)).minute == 15  # type: ignore[union-attr]


def test_explicit_function_name_is_an_invokable_alias(tmp_path):
    from devserver.template import load_model

    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text("def handler(event, context):\n    return event\n")
    (tmp_path / "template.yaml").write_text(
        "Transform: AWS::Serverless-2016-10-31\n"
        "Resources:\n"
        "  Worker:\n"
        "    Type: AWS::Serverless::Function\n"
        "    Properties:\n"
        "      FunctionName: !Sub '${AWS::StackName}-worker'\n"
        "      CodeUri: fn/\n"
        "      Handler: app.handler\n"
        "      Runtime: python3.11\n"
    )
    model = load_model(tmp_path / "template.yaml", stack_name="local")
    assert model.aliases == {"local-worker": "Worker"}
