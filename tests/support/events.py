"""Payload-2.0 HTTP API events and WebSocket events, shaped like API Gateway's real ones."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode


def http_event(
    method: str,
    path: str,
    *,
    route: str | None = None,
    path_params: dict[str, str] | None = None,
    body: Any = None,
    raw_body: str | bytes | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    source_ip: str = "198.51.100.7",
    base64_body: bool = False,
) -> dict[str, Any]:
    hdrs = {"content-type": "application/json", "user-agent": "pytest", "host": "api.example.test"}
    if token:
        hdrs["authorization"] = f"Bearer {token}"
    for key, value in (headers or {}).items():
        hdrs[key.lower()] = value
    text: str | bytes | None = raw_body
    if body is not None:
        text = json.dumps(body)
    encoded = False
    if isinstance(text, bytes) or base64_body:
        raw = text if isinstance(text, bytes) else (text or "").encode()
        text = base64.b64encode(raw).decode()
        encoded = True
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {route or path}",
        "rawPath": path,
        "rawQueryString": urlencode(query or {}),
        "headers": hdrs,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api1234567",
            "domainName": "api.example.test",
            "domainPrefix": "api",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": source_ip, "userAgent": "pytest"},
            "requestId": str(uuid.uuid4()),
            "routeKey": f"{method} {route or path}",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": encoded,
    }
    if query:
        event["queryStringParameters"] = dict(query)
    if path_params:
        event["pathParameters"] = dict(path_params)
    if text is not None:
        event["body"] = text
    return event


def ws_event(
    route_key: str,
    connection_id: str,
    *,
    body: Any = None,
    raw_body: str | None = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    event_type = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route_key, "MESSAGE")
    now = int(time.time() * 1000)
    context: dict[str, Any] = {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": str(uuid.uuid4()),
        "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "messageDirection": "IN",
        "stage": "prod",
        "connectedAt": now,
        "requestTimeEpoch": now,
        "identity": {"sourceIp": "198.51.100.7", "userAgent": "pytest"},
        "requestId": str(uuid.uuid4()),
        "domainName": "ws.example.test",
        "connectionId": connection_id,
        "apiId": "ws12345678",
    }
    if event_type == "MESSAGE":
        context["messageId"] = str(uuid.uuid4())
    event: dict[str, Any] = {"requestContext": context, "isBase64Encoded": False}
    if headers is not None or event_type == "CONNECT":
        event["headers"] = headers or {"Host": "ws.example.test"}
    if query is not None:
        event["queryStringParameters"] = query
    if body is not None:
        event["body"] = json.dumps(body)
    elif raw_body is not None:
        event["body"] = raw_body
    return event


class LambdaContext:
    def __init__(self, name: str = "test-function", timeout_ms: int = 10_000) -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 256
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "2026/11/22/[$LATEST]test"
        self._deadline = time.monotonic() + timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
