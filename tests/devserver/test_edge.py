"""Edge cases on small throwaway templates: no $default WS route, $default HTTP route, bad code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import devserver

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Resources:
  Catch:
    Type: AWS::Serverless::Function
    Properties:
      Handler: h.catch
      CodeUri: src/
      Runtime: python3.11
      Events:
        Default:
          Type: HttpApi
        Tick:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: cron(0 12 * * ? *)
            State: DISABLED
  Slow:
    Type: AWS::Serverless::Function
    Properties:
      Handler: h.slow
      CodeUri: src/
      Timeout: 10
      Events:
        Get:
          Type: HttpApi
          Properties:
            Path: /slow
            Method: GET
  Missing:
    Type: AWS::Serverless::Function
    Properties:
      Handler: h.catch
      CodeUri: does-not-exist/
      Events:
        Get:
          Type: HttpApi
          Properties:
            Path: /missing
            Method: GET
  Ws:
    Type: AWS::ApiGatewayV2::Api
    Properties:
      ProtocolType: WEBSOCKET
      RouteSelectionExpression: $request.body.action
  Integ:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Ws
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Catch.Arn}/invocations
  Route:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Ws
      RouteKey: known
      Target: !Join [/, [integrations, !Ref Integ]]
"""


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("small")
    (root / "src").mkdir()
    (root / "src" / "h.py").write_text(
        "import time\n\n\ndef catch(event, context):\n    return {'route': event.get('routeKey')}\n\n\n"
        "def slow(event, context):\n    time.sleep(4)\n"
    )
    (root / "template.yaml").write_text(TEMPLATE)
    with (
        open(root / "log.txt", "w") as log,
        devserver.start(str(root / "template.yaml"), log_stream=log, ws_idle_timeout=1.5, integration_timeout=2.0) as h,
    ):
        yield h


def test_http_default_route(small: devserver.Handle) -> None:
    assert requests.get(f"{small.http_url}/anything/at/all", timeout=10).json() == {"route": "$default"}


def test_integration_timeout_503(small: devserver.Handle) -> None:
    # This emulator runs with --integration-timeout 2 (AWS: 30 s); the function's own Timeout is 10 s.
    r = requests.get(f"{small.http_url}/slow", timeout=10)
    assert r.status_code == 503 and r.json() == {"message": "Service Unavailable"}


def test_missing_code_is_500_not_a_crash(small: devserver.Handle) -> None:
    r = requests.get(f"{small.http_url}/missing", timeout=10)
    assert r.status_code == 500 and r.json() == {"message": "Internal Server Error"}
    assert requests.get(f"{small.http_url}/x", timeout=10).status_code == 200


def test_ws_forbidden_without_default_route(small: devserver.Handle) -> None:
    with connect(small.ws_url) as ws:
        ws.send(json.dumps({"action": "unknown"}))
        reply = json.loads(ws.recv(timeout=10))
        assert reply["message"] == "Forbidden" and reply["connectionId"] and reply["requestId"]
        ws.send(json.dumps({"action": "known"}))  # one-way route: nothing comes back, socket stays open
        ws.send(json.dumps({"action": "other"}))
        assert json.loads(ws.recv(timeout=10))["message"] == "Forbidden"


def test_idle_timeout_closes(small: devserver.Handle) -> None:
    # This emulator runs with --ws-idle-timeout 1.5 (AWS: 10 minutes).
    with connect(small.ws_url) as ws:
        with pytest.raises(ConnectionClosed) as exc:
            ws.recv(timeout=10)
    assert exc.value.rcvd is not None and exc.value.rcvd.code == 1001


def test_disabled_schedule_is_not_started(small: devserver.Handle) -> None:
    assert small.emulator.scheduler is not None and small.emulator.scheduler.schedules == []


def test_static_prefix_collision_is_refused(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(
        "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      Handler: h.x\n"
        "      Events:\n        E:\n          Type: HttpApi\n          Properties: {Path: /web/api, Method: GET}\n"
    )
    with pytest.raises(ValueError, match="collides"):
        devserver.start(str(tmp_path / "template.yaml"), static=[f"{tmp_path}:/web/"])
