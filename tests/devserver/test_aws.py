"""Loopback AWS endpoints with real boto3 clients: Lambda Invoke and @connections."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import requests
from websockets.sync.client import connect

import devserver

from .conftest import TEMPLATE, Env, aws_client, wait_for


def test_invoke_request_response(emu: Env) -> None:
    lam = aws_client("lambda", emu.aws)
    out = lam.invoke(FunctionName="Echo", Payload=json.dumps({"rawPath": "/direct"}))
    assert out["StatusCode"] == 200 and "FunctionError" not in out
    body = json.loads(json.loads(out["Payload"].read())["body"])
    assert body["event"] == {"rawPath": "/direct"}
    arn = "arn:aws:lambda:us-east-1:123456789012:function:Noop"
    assert json.loads(lam.invoke(FunctionName=arn)["Payload"].read())["body"] == "ok"
    assert lam.invoke(FunctionName="Noop", InvocationType="DryRun")["StatusCode"] == 204


def test_invoke_function_error(emu: Env) -> None:
    out = aws_client("lambda", emu.aws).invoke(FunctionName="Boom", Payload=b"{}")
    assert out["StatusCode"] == 200 and out["FunctionError"] == "Unhandled"
    err = json.loads(out["Payload"].read())
    assert err["errorType"] == "ValueError" and err["errorMessage"] == "boom goes the handler"
    assert any("raise ValueError" in line for line in err["stackTrace"])


def test_invoke_timeout(emu: Env) -> None:
    out = aws_client("lambda", emu.aws).invoke(FunctionName="Slow", Payload=json.dumps({"queryStringParameters": {"s": "5"}}))
    assert out["FunctionError"] == "Unhandled"
    assert "Task timed out after 2.00 seconds" in json.loads(out["Payload"].read())["errorMessage"]


def test_invoke_unknown_function(emu: Env) -> None:
    lam = aws_client("lambda", emu.aws)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName="Missing")


def test_event_invoke_retries_then_on_failure_destination(emu: Env) -> None:
    lam = aws_client("lambda", emu.aws)
    out = lam.invoke(FunctionName="Failer", InvocationType="Event", Payload=json.dumps({"job": 42}))
    assert out["StatusCode"] == 202
    dest = wait_for(lambda: next((r for r in emu.records("record") if r.get("requestPayload") == {"job": 42}), None))
    assert len([a for a in emu.records("attempt") if a == {"job": 42}]) == 2  # 1 try + MaximumRetryAttempts 1
    assert dest["version"] == "1.0" and dest["timestamp"]
    rc = dest["requestContext"]
    assert rc["functionArn"] == "arn:aws:lambda:us-east-1:123456789012:function:Failer:$LATEST"
    assert rc["condition"] == "RetriesExhausted" and rc["approximateInvokeCount"] == 2
    assert dest["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert dest["responsePayload"]["errorMessage"] == "always fails"


def test_connections_api_with_boto3(emu: Env) -> None:
    mgmt = aws_client("apigatewaymanagementapi", f"{emu.aws}/dev")
    with connect(f"{emu.ws}/dev", user_agent_header="ws-test-agent") as ws:
        ws.send(json.dumps({"meta": {"action": "echo"}}))
        conn_id = json.loads(ws.recv(timeout=10))["connectionId"]
        mgmt.post_to_connection(ConnectionId=conn_id, Data=b"hello from boto3")
        assert ws.recv(timeout=10) == "hello from boto3"
        mgmt.post_to_connection(ConnectionId=conn_id, Data=b"\xff\xfe")
        assert ws.recv(timeout=10) == b"\xff\xfe"  # not UTF-8 -> binary frame
        info = mgmt.get_connection(ConnectionId=conn_id)
        assert info["Identity"]["UserAgent"] == "ws-test-agent" and info["Identity"]["SourceIp"] == "127.0.0.1"
        assert info["ConnectedAt"] <= info["LastActiveAt"]
        mgmt.delete_connection(ConnectionId=conn_id)
        wait_for(lambda: any(r["requestContext"]["connectionId"] == conn_id for r in emu.records("disconnect")))
    with pytest.raises(mgmt.exceptions.GoneException):
        mgmt.post_to_connection(ConnectionId=conn_id, Data=b"late")
    r = requests.post(f"{emu.aws}/@connections/unknown", data=b"x", timeout=10)  # stage-less path works too
    assert r.status_code == 410 and r.headers["x-amzn-ErrorType"] == "GoneException"


def test_endpoint_env_var_routes_boto3_here(emu: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI", emu.aws)
    mgmt = boto3.client("apigatewaymanagementapi", region_name="us-east-1")
    with pytest.raises(mgmt.exceptions.GoneException):
        mgmt.get_connection(ConnectionId="gone")
    assert os.environ["AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"] == emu.aws


def test_handler_calls_back_via_boto3(emu: Env) -> None:
    """A handler with unchanged boto3 code posts to its caller and fires an async Lambda invoke."""
    with connect(emu.ws) as ws:
        ws.send(json.dumps({"meta": {"action": "callback"}, "x": 1}))
        assert ws.recv(timeout=15) == 'callback:{"meta": {"action": "callback"}, "x": 1}'
        with pytest.raises(TimeoutError):  # one-way route: the handler's return value is not sent
            ws.recv(timeout=0.3)
    wait_for(lambda: any(r.get("from") == "callback" for r in emu.records("record")), timeout=15)


def test_stats_and_health(emu: Env) -> None:
    requests.get(f"{emu.http}/noop", timeout=10)
    assert requests.get(f"{emu.aws}/_emulator/health", timeout=10).json() == {"status": "ok"}
    stats = requests.get(f"{emu.aws}/_emulator/stats", timeout=10).json()
    noop = stats["functions"]["Noop"]
    assert noop["invocations"] >= 1 and noop["peak_rss_mb"] > 5 and noop["worker_details"][0]["pid"] > 0


def test_peak_memory_is_the_workers_own(tmp_path: Path) -> None:
    """A worker's "Max Memory Used" must not include the memory of whoever started the emulator:
    Linux carries ru_maxrss across fork + exec, so it once reported this test runner's RSS."""
    ballast = bytearray(400 * 1024 * 1024)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1  # resident, not just reserved
    log = open(tmp_path / "emulator.log", "w")
    handle = devserver.start(str(TEMPLATE), parameter_overrides={"RecordDir": str(tmp_path / "records")}, log_stream=log)
    try:
        assert requests.get(f"{handle.http_url}/noop", timeout=30).status_code == 200
        noop = requests.get(f"{handle.aws_url}/_emulator/stats", timeout=10).json()["functions"]["Noop"]
        assert 5 < noop["peak_rss_mb"] < 200, noop
    finally:
        handle.stop()
        log.close()
        del ballast
