"""The issue's walk-through, through real HTTP and WebSocket servers: register, log in, open a
conversation, send over the WebSocket and over HTTP, and see ack, typing on, reply, typing off."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import websockets

pytestmark = pytest.mark.e2e


def _signup(http, factory) -> tuple[str, str]:
    client = factory.client()
    email = f"e2e-{uuid.uuid4().hex[:8]}@example.com"
    r = http("POST", "/auth/register", json={"email": email, "password": "e2e-password-1", "client_id": str(client.id)})
    assert r.status_code == 201, r.text
    r = http("POST", "/auth/login", json={"email": email, "password": "e2e-password-1", "client_id": str(client.id)})
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    r = http("POST", "/conversations", token, json={"title": "e2e"})
    assert r.status_code == 201, r.text
    return token, r.json()["conversation"]["id"]


async def _collect(ws, until, timeout: float = 20.0) -> list[dict]:
    events: list[dict] = []
    async with asyncio.timeout(timeout):
        while not until(events):
            events.append(json.loads(await ws.recv()))
    return events


def _turn_done(events: list[dict]) -> bool:
    return any(e.get("type") == "typing" and e.get("state") == "off" for e in events)


def _assert_turn(events: list[dict], content: str) -> None:
    kinds = [(e["type"], e.get("state") or e.get("message", {}).get("role")) for e in events]
    assert kinds[0] == ("message.created", "user"), kinds
    assert events[0]["message"]["content"] == content
    on = kinds.index(("typing", "on"))
    reply = kinds.index(("message.created", "assistant"))
    off = kinds.index(("typing", "off"))
    assert on < reply < off, kinds
    assert events[reply]["message"]["in_reply_to"] == events[0]["message"]["id"]
    assert "demo assistant" in events[reply]["message"]["content"]
    assert [k for k in kinds if k == ("message.created", "assistant")] == [("message.created", "assistant")]


def test_chat_over_websocket_and_http(stack, http, factory):
    token, conversation_id = _signup(http, factory)

    async def scenario() -> None:
        ticket = http("POST", "/auth/ws-ticket", token).json()["ticket"]
        async with websockets.connect(f"{stack.ws_url}/?ticket={ticket}") as ws:
            await ws.send(json.dumps({"action": "ping"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}

            await ws.send(
                json.dumps(
                    {
                        "action": "sendMessage",
                        "conversation_id": conversation_id,
                        "content": "hello over the socket",
                        "client_message_id": "c-1",
                    }
                )
            )
            _assert_turn(await _collect(ws, _turn_done), "hello over the socket")

            r = http("POST", f"/conversations/{conversation_id}/messages", token, json={"content": "hello over http"})
            assert r.status_code == 201 and r.json()["message"]["status"] == "pending"
            _assert_turn(await _collect(ws, _turn_done), "hello over http")

    asyncio.run(scenario())
    items = http("GET", f"/conversations/{conversation_id}/messages", token).json()["items"]
    assert [m["role"] for m in items] == ["user", "assistant", "user", "assistant"]
    assert [m["seq"] for m in items] == [1, 2, 3, 4]
    assert [m["status"] for m in items if m["role"] == "user"] == ["replied", "replied"]


def test_ticket_is_single_use_and_bad_tickets_are_rejected(stack, http, factory):
    token, _ = _signup(http, factory)
    ticket = http("POST", "/auth/ws-ticket", token).json()["ticket"]

    async def scenario() -> None:
        async with websockets.connect(f"{stack.ws_url}/?ticket={ticket}"):
            pass
        for bad in (ticket, "wst_forged", ""):
            with pytest.raises(websockets.exceptions.InvalidStatus) as info:
                async with websockets.connect(f"{stack.ws_url}/?ticket={bad}"):
                    pass
            assert info.value.response.status_code in (401, 403)

    asyncio.run(scenario())


def test_api_gateway_answers_for_unknown_routes(stack, http):
    r = http("GET", "/no/such/route")
    assert r.status_code == 404 and r.json() == {"message": "Not Found"}
