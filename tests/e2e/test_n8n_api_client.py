"""n8n as an API client, through the emulator: a workflow's key posts a follow-up that reaches the
user's live WebSocket; in human mode the user's message is acknowledged and never sent to n8n."""

from __future__ import annotations

import asyncio
import json
import uuid
from types import SimpleNamespace

import pytest
import websockets

from tests.e2e.test_chat_flow import _signup

pytestmark = pytest.mark.e2e


async def _next_event(ws, kind: str, timeout: float = 30.0) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            event = json.loads(await ws.recv())
            if event.get("type") == kind:
                return event


def test_follow_up_by_api_key_reaches_the_live_socket_and_human_mode_skips_n8n(stack, http, factory):
    token, conversation_id = _signup(http, factory)
    client_id = http("GET", "/auth/verify", token).json()["user"]["client_id"]
    admin = factory.user(SimpleNamespace(id=uuid.UUID(client_id)), role="admin")
    admin_token = factory.token(admin)
    r = http("POST", "/api-keys", admin_token, json={"name": "n8n follow-ups", "scopes": ["messages:write"]})
    assert r.status_code == 201, r.text
    key = r.json()["api_key"]["key"]

    async def scenario() -> None:
        ticket = http("POST", "/auth/ws-ticket", token).json()["ticket"]
        async with websockets.connect(f"{stack.ws_url}/?ticket={ticket}") as ws:
            body = {"content": "Your parcel left the warehouse.", "client_message_id": "follow-up-1"}
            r = http("POST", f"/conversations/{conversation_id}/agent-messages", key, json=body)
            assert r.status_code == 201, r.text
            event = await _next_event(ws, "message.created")
            assert event["message"]["content"] == body["content"] and event["message"]["role"] == "assistant"
            assert http("POST", f"/conversations/{conversation_id}/agent-messages", key, json=body).status_code == 200

            r = http("PUT", f"/conversations/{conversation_id}", admin_token, json={"mode": "human"})
            assert r.status_code == 200 and r.json()["conversation"]["mode"] == "human"
            updated = await _next_event(ws, "conversation.updated")
            assert updated["conversation"]["mode"] == "human"

            await ws.send(json.dumps({"action": "sendMessage", "conversation_id": conversation_id, "content": "a person, please"}))
            ack = await _next_event(ws, "message.created")
            assert ack["message"]["role"] == "user" and ack["message"]["status"] == "sent"
            # nothing follows from n8n: a ping round trip proves the socket is idle, not slow
            await ws.send(json.dumps({"action": "ping"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 30)) == {"type": "pong"}

    asyncio.run(scenario())
    items = http("GET", f"/conversations/{conversation_id}/messages", token).json()["items"]
    assert [(m["role"], m["status"]) for m in items] == [("assistant", "sent"), ("user", "sent")]
