"""API Gateway WebSocket API: $connect / routed messages / $disconnect, plus the connection registry."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from .lambda_service import LambdaService
from .template import WsApiSpec

MAX_MESSAGE = 128 * 1024


def _connection_id() -> str:
    # Same shape as API Gateway's ids ("L0SM9cOFvHcCIhw="), kept URL-path-safe.
    return base64.b64encode(os.urandom(11)).decode().replace("/", "A").replace("+", "B")


def _request_id() -> str:
    return base64.b64encode(os.urandom(6)).decode().replace("/", "A").replace("+", "B") + "="


def _now() -> tuple[datetime, int]:
    now = datetime.now(UTC)
    return now, int(now.timestamp() * 1000)


def _request_time(now: datetime) -> str:
    return now.strftime("%d/%b/%Y:%H:%M:%S +0000")


@dataclass
class Connection:
    id: str
    ws: web.WebSocketResponse
    source_ip: str
    user_agent: str
    connected_at: float = field(default_factory=time.time)
    last_active: float = field(default_factory=time.time)
    closed: bool = False
    disconnect_reason: str = "Client-side close frame status code '1000'"


class WebSocketApi:
    def __init__(self, lambdas: LambdaService, spec: WsApiSpec | None, idle_timeout: float = 600.0, max_duration: float = 7200.0) -> None:
        self.lambdas = lambdas
        self.spec = spec
        self.idle_timeout = idle_timeout
        self.max_duration = max_duration
        self.connections: dict[str, Connection] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.domain = "localhost"

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _context(
        self, conn_id: str, route_key: str, event_type: str, source_ip: str, user_agent: str, connected_at_ms: int
    ) -> dict[str, Any]:
        assert self.spec is not None
        now, epoch = _now()
        return {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": _request_id(),
            "requestTime": _request_time(now),
            "messageDirection": "IN",
            "stage": self.spec.stage,
            "connectedAt": connected_at_ms,
            "requestTimeEpoch": epoch,
            "identity": {"sourceIp": source_ip, "userAgent": user_agent},
            "requestId": _request_id(),
            "domainName": self.domain,
            "connectionId": conn_id,
            "apiId": self.spec.api_id,
        }

    def _route_for(self, body: str) -> str | None:
        assert self.spec is not None
        expr = self.spec.selection_expression
        key: str | None = None
        if expr.startswith("$request.body."):
            try:
                value: Any = json.loads(body)
                for part in expr[len("$request.body.") :].split("."):
                    value = value.get(part) if isinstance(value, dict) else None  # no such key: $default
                if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                    key = str(value)
            except (ValueError, RecursionError):  # RecursionError: hostile nesting; API Gateway falls back to $default
                key = None
        if key is not None and key in self.spec.routes:
            return key
        return "$default" if "$default" in self.spec.routes else None

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if self.spec is None:
            return web.json_response({"message": "Not Found"}, status=404)
        path = request.path.strip("/")
        if path not in ("", self.spec.stage) and "/" in path:
            return web.json_response({"message": "Forbidden"}, status=403)
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.json_response({"message": "Forbidden"}, status=403)
        self.domain = request.host
        conn_id = _connection_id()
        source_ip = request.remote or "127.0.0.1"
        user_agent = request.headers.get("User-Agent", "")
        connected_at_ms = int(time.time() * 1000)
        protocols: tuple[str, ...] = ()

        # $connect decides whether the upgrade happens at all.
        fn = self.spec.routes.get("$connect")
        if fn:
            headers: dict[str, str] = {}
            multi: dict[str, list[str]] = {}
            for k, v in request.headers.items():
                multi.setdefault(k, []).append(v)
                headers[k] = v
            mq: dict[str, list[str]] = {}
            for k, v in request.rel_url.query.items():
                mq.setdefault(k, []).append(v)
            event: dict[str, Any] = {"headers": headers, "multiValueHeaders": multi}
            if mq:
                event["queryStringParameters"] = {k: v[-1] for k, v in mq.items()}
                event["multiValueQueryStringParameters"] = mq
            event["requestContext"] = self._context(conn_id, "$connect", "CONNECT", source_ip, user_agent, connected_at_ms)
            event["isBase64Encoded"] = False
            result = await self.lambdas.invoke(fn, json.dumps(event).encode())
            if not result.ok:
                return web.json_response({"message": "Internal server error"}, status=500)
            status = 200
            try:
                data = json.loads(result.payload)
                if isinstance(data, dict) and "statusCode" in data:
                    status = int(data["statusCode"])
                if isinstance(data, dict) and isinstance(data.get("headers"), dict):
                    # A $connect response may pick the subprotocol (e.g. token-in-protocol auth).
                    for k, v in data["headers"].items():
                        if k.lower() == "sec-websocket-protocol":
                            protocols = (str(v),)
            except (ValueError, TypeError):
                pass
            if not 200 <= status < 300:
                return web.json_response(
                    {"message": "Forbidden" if status == 403 else "Unauthorized" if status == 401 else "Error"},
                    status=status,
                )

        ws = web.WebSocketResponse(max_msg_size=4 * MAX_MESSAGE, autoping=True, protocols=protocols)
        await ws.prepare(request)
        conn = Connection(conn_id, ws, source_ip, user_agent)
        self.connections[conn_id] = conn
        watchdog = asyncio.ensure_future(self._watchdog(conn))
        try:
            async for msg in ws:
                conn.last_active = time.time()
                if msg.type == WSMsgType.TEXT:
                    data = msg.data
                elif msg.type == WSMsgType.BINARY:
                    data = msg.data.decode("utf-8", "replace")
                else:
                    break
                if len(data.encode()) > MAX_MESSAGE:
                    conn.disconnect_reason = "Message too big"
                    await ws.close(code=WSCloseCode.MESSAGE_TOO_BIG, message=b"Message too big")
                    break
                self._spawn(self._message(conn, data, connected_at_ms))
        finally:
            watchdog.cancel()
            conn.closed = True
            self.connections.pop(conn_id, None)
            code = ws.close_code if ws.close_code is not None else 1006
            if conn.disconnect_reason.startswith("Client-side"):
                conn.disconnect_reason = f"Client-side close frame status code '{code}'"
            if "$disconnect" in self.spec.routes:
                self._spawn(self._disconnect(conn, code, connected_at_ms))
        return ws

    async def _message(self, conn: Connection, body: str, connected_at_ms: int) -> None:
        assert self.spec is not None
        route = self._route_for(body)
        ctx = self._context(conn.id, route or "$default", "MESSAGE", conn.source_ip, conn.user_agent, connected_at_ms)
        if route is None:
            await self._send(conn, json.dumps({"message": "Forbidden", "connectionId": conn.id, "requestId": ctx["requestId"]}))
            return
        ctx["messageId"] = _request_id()
        event = {"requestContext": ctx, "body": body, "isBase64Encoded": False}
        result = await self.lambdas.invoke(self.spec.routes[route], json.dumps(event).encode())
        if not result.ok:
            await self._send(
                conn,
                json.dumps({"message": "Internal server error", "connectionId": conn.id, "requestId": ctx["requestId"]}),
            )
            return
        if route in self.spec.two_way:
            try:
                data = json.loads(result.payload)
            except ValueError:
                return
            out = data.get("body") if isinstance(data, dict) else data
            if out is not None:
                await self._send(conn, out if isinstance(out, str) else json.dumps(out))

    async def _disconnect(self, conn: Connection, code: int, connected_at_ms: int) -> None:
        assert self.spec is not None
        ctx = self._context(conn.id, "$disconnect", "DISCONNECT", conn.source_ip, conn.user_agent, connected_at_ms)
        ctx["disconnectStatusCode"] = code
        ctx["disconnectReason"] = conn.disconnect_reason
        event = {
            "headers": {"Host": self.domain, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""},
            "multiValueHeaders": {},
            "requestContext": ctx,
            "isBase64Encoded": False,
        }
        await self.lambdas.invoke(self.spec.routes["$disconnect"], json.dumps(event).encode())

    async def _send(self, conn: Connection, data: str | bytes) -> bool:
        if conn.closed or conn.ws.closed:
            return False
        try:
            if isinstance(data, bytes):
                await conn.ws.send_bytes(data)
            else:
                await conn.ws.send_str(data)
            return True
        except (ConnectionError, RuntimeError):
            return False

    async def _watchdog(self, conn: Connection) -> None:
        while not conn.closed:
            now = time.time()
            idle_left = conn.last_active + self.idle_timeout - now
            life_left = conn.connected_at + self.max_duration - now
            if idle_left <= 0 or life_left <= 0:
                conn.disconnect_reason = "Going away"
                await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"Going away")
                return
            await asyncio.sleep(min(idle_left, life_left, 5.0))

    # -- @connections management API
    async def post(self, conn_id: str, data: bytes) -> bool:
        conn = self.connections.get(conn_id)
        if conn is None or conn.closed:
            return False
        conn.last_active = time.time()
        try:
            payload: str | bytes = data.decode("utf-8")
        except UnicodeDecodeError:
            payload = data
        return await self._send(conn, payload)

    async def delete(self, conn_id: str) -> bool:
        conn = self.connections.get(conn_id)
        if conn is None or conn.closed:
            return False
        conn.disconnect_reason = "Connection deleted by the @connections API"
        self._spawn(conn.ws.close(code=WSCloseCode.OK, message=b"Going away"))
        return True

    async def stop(self) -> None:
        for conn in list(self.connections.values()):
            await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"Server shutting down")
        for t in list(self._tasks):
            t.cancel()
