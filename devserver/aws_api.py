"""Loopback AWS endpoints: API Gateway Management (@connections), Lambda Invoke, emulator stats."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from .lambda_service import LambdaService
from .websocket_api import MAX_MESSAGE, WebSocketApi

_CONNECTIONS = re.compile(r"^(?:/[^/@]+)?/@connections/([^/]+)/?$")
_INVOKE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations/?$")


def _aws_error(status: int, error_type: str, message: str | None, request_id: str | None = None) -> web.Response:
    # botocore takes the error code from x-amzn-ErrorType for rest-json services.
    rid = request_id or str(uuid.uuid4())
    body: dict[str, Any] = {"message": message}
    if message is not None:
        body.update({"Type": "User", "Message": message})
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type="application/json",
        headers={"x-amzn-ErrorType": error_type, "x-amzn-RequestId": rid},
    )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AwsApi:
    def __init__(self, lambdas: LambdaService, ws: WebSocketApi, stats_extra: Callable[[], dict[str, Any]]) -> None:
        self.lambdas = lambdas
        self.ws = ws
        self.stats_extra = stats_extra

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        raw_path = request.rel_url.raw_path
        if raw_path.startswith("/_emulator/"):
            return self._emulator(request)
        m = _INVOKE.match(raw_path)
        if m:
            return await self._invoke(request, unquote(m.group(1)))
        m = _CONNECTIONS.match(raw_path)
        if m:
            return await self._connection(request, unquote(m.group(1)))
        return _aws_error(404, "UnknownOperationException", f"Unknown operation {request.method} {raw_path}")

    def _emulator(self, request: web.BaseRequest) -> web.Response:
        if request.path == "/_emulator/health":
            return web.json_response({"status": "ok"})
        if request.path == "/_emulator/stats":
            return web.json_response(
                {
                    "functions": self.lambdas.stats(),
                    "async": self.lambdas.async_events,
                    "websocket_connections": len(self.ws.connections),
                    **self.stats_extra(),
                }
            )
        return web.json_response({"message": "Not Found"}, status=404)

    async def _connection(self, request: web.BaseRequest, conn_id: str) -> web.Response:
        rid = str(uuid.uuid4())
        conn = self.ws.connections.get(conn_id)
        if conn is None or conn.closed:
            return _aws_error(410, "GoneException", None, rid)
        if request.method == "POST":
            data = await request.read()
            if len(data) > MAX_MESSAGE:
                return _aws_error(413, "PayloadTooLargeException", "Request Entity Too Large", rid)
            if not await self.ws.post(conn_id, data):
                return _aws_error(410, "GoneException", None, rid)
            return web.Response(status=200, headers={"x-amzn-RequestId": rid})
        if request.method == "GET":
            return web.json_response(
                {
                    # Wire names are camelCase (botocore maps them to ConnectedAt / Identity / LastActiveAt).
                    "connectedAt": _iso(conn.connected_at),
                    "identity": {"sourceIp": conn.source_ip, "userAgent": conn.user_agent},
                    "lastActiveAt": _iso(conn.last_active),
                },
                headers={"x-amzn-RequestId": rid},
            )
        if request.method == "DELETE":
            await self.ws.delete(conn_id)
            return web.Response(status=204, headers={"x-amzn-RequestId": rid})
        return _aws_error(405, "MethodNotAllowedException", "Method not allowed", rid)

    async def _invoke(self, request: web.BaseRequest, name: str) -> web.Response:
        pool = self.lambdas.lookup(name)
        rid = str(uuid.uuid4())
        if pool is None:
            region = self.lambdas.model.region
            arn = name if name.startswith("arn:") else f"arn:aws:lambda:{region}:123456789012:function:{name}"
            return _aws_error(404, "ResourceNotFoundException", f"Function not found: {arn}", rid)
        payload = await request.read()
        if len(payload) > 6 * 1024 * 1024:
            return _aws_error(413, "RequestTooLargeException", "Request must be smaller than 6291456 bytes", rid)
        if payload:
            try:
                json.loads(payload)
            except ValueError:
                return _aws_error(400, "InvalidRequestContentException", "Could not parse request body into json", rid)
        kind = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if kind == "DryRun":
            return web.Response(status=204, headers={"x-amzn-RequestId": rid})
        if kind == "Event":
            if len(payload) > 256 * 1024:
                return _aws_error(413, "RequestTooLargeException", "Request must be smaller than 262144 bytes", rid)
            self.lambdas.invoke_async(pool, payload, rid)
            return web.Response(status=202, headers={"x-amzn-RequestId": rid})
        if kind != "RequestResponse":
            return _aws_error(400, "InvalidParameterValueException", f"Unsupported invocation type {kind}", rid)
        client_context = None
        if "X-Amz-Client-Context" in request.headers:
            try:
                client_context = json.loads(base64.b64decode(request.headers["X-Amz-Client-Context"]))
            except ValueError:
                client_context = None
        t0 = time.perf_counter()
        result = await pool.invoke(payload, client_context=client_context)
        headers = {
            "x-amzn-RequestId": result.request_id,
            "X-Amz-Executed-Version": "$LATEST",
            "x-amzn-Remapped-Content-Length": "0",
            "X-Amz-Duration": f"{(time.perf_counter() - t0) * 1000:.2f}",
        }
        if not result.ok:
            headers["X-Amz-Function-Error"] = "Unhandled"
        return web.Response(status=200, body=result.payload, headers=headers, content_type="application/json")
