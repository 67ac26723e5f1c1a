"""Every HttpApi route and every WebSocket route in template.yaml is served by the emulator and
reaches its own function (the answer is the function's, not API Gateway's 404)."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import websockets

from tests.support.template import http_routes, template

pytestmark = pytest.mark.e2e


def test_every_http_route_reaches_its_function(stack, http):
    missed = []
    for method, path in sorted(http_routes()):
        concrete = path.replace("{proxy+}", "some/deep/path")
        while "{" in concrete:
            start, end = concrete.index("{"), concrete.index("}")
            concrete = concrete[:start] + str(uuid.uuid4()) + concrete[end + 1 :]
        r = http(method, concrete, headers={"Origin": "https://nowhere.example"})
        body = r.text
        if r.status_code == 404 and body.strip() in ('{"message":"Not Found"}', '{"message": "Not Found"}'):
            missed.append(f"{method} {path}")
        assert r.status_code < 500 or path == "/health", f"{method} {path} -> {r.status_code} {body[:200]}"
    assert not missed, f"routes not served: {missed}"


def test_every_websocket_route_is_served(stack, http, factory):
    keys = sorted(v["Properties"]["RouteKey"] for v in template()["Resources"].values() if v["Type"] == "AWS::ApiGatewayV2::Route")
    assert keys == sorted(["$connect", "$disconnect", "$default", "sendMessage", "subscribe", "ping"])
    client = factory.client()
    admin = factory.user(client, role="admin")
    token = factory.token(admin)

    async def scenario() -> None:
        ticket = http("POST", "/auth/ws-ticket", token).json()["ticket"]
        async with websockets.connect(f"{stack.ws_url}/?ticket={ticket}") as ws:
            await ws.send(json.dumps({"action": "ping"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}
            await ws.send(json.dumps({"action": "subscribe", "conversation_id": str(uuid.uuid4())}))
            event = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert event["type"] == "error" and event["error"]["code"] == "not_found"
            await ws.send(json.dumps({"action": "sendMessage", "conversation_id": "nope", "content": "x", "client_message_id": "k1"}))
            event = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert event["type"] == "error" and event["action"] == "sendMessage" and event["client_message_id"] == "k1"
            await ws.send(json.dumps({"action": "dance", "client_message_id": "k2"}))
            event = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert event == {**event, "type": "error", "action": "dance", "client_message_id": "k2"}
            await ws.send("not json at all")
            event = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert event["type"] == "error"

    asyncio.run(scenario())

    from sqlalchemy import text

    from bitworks.db import get_engine
    from tests.e2e.conftest import wait_for

    def no_rows() -> bool:
        with get_engine().connect() as conn:
            return conn.execute(text("SELECT count(*) FROM connections")).scalar() == 0

    wait_for(no_rows)  # $disconnect ran and deleted the row
