"""n8n as an API client: a workflow's key posts a follow-up into a conversation; human mode."""

from __future__ import annotations

import uuid

from tests.support.n8n_stub import ChatScenario

pytest_plugins = ["tests.support.n8n_stub"]  # fixtures: n8n, aws, chat


def _key(api_client, factory, admin, scopes):
    status, body, _ = api_client.call("POST", "/api-keys", token=factory.token(admin), body={"name": "wf", "scopes": scopes})
    assert status == 201
    return body["api_key"]["key"]


def test_follow_up_from_a_workflow_is_stored_and_pushed_once(chat: ChatScenario, api_client, factory, aws):
    admin = factory.user(chat.client, role="admin")
    key = _key(api_client, factory, admin, ["messages:write"])
    path = f"/conversations/{chat.conversation_id}/agent-messages"
    body = {"content": "Your parcel left the warehouse.", "client_message_id": "wf-1", "metadata": {"source": "shipping"}}
    status, data, _ = api_client.call("POST", path, token=key, body=body)
    assert status == 201, data
    message = data["message"]
    assert message["role"] == "assistant" and message["status"] == "sent" and message["seq"] == 1
    assert message["metadata"]["source"] == "shipping" and message["metadata"]["author"].startswith("api_key:")
    pushed = aws.events(chat.connection_id)
    assert [e["type"] for e in pushed] == ["message.created"] and pushed[0]["message"]["id"] == message["id"]

    # idempotent: the same client_message_id with the same content answers 200, pushes nothing
    status, again, _ = api_client.call("POST", path, token=key, body=body)
    assert status == 200 and again["message"]["id"] == message["id"]
    assert len(aws.events(chat.connection_id)) == 1
    status, _, _ = api_client.call("POST", path, token=key, body={**body, "content": "other"})
    assert status == 409
    assert [m.seq for m in chat.messages()] == [1]
    assert aws.invokes == [], "a proactive message starts no AI turn"


def test_system_note_by_admin_and_key_rules(chat: ChatScenario, api_client, factory):
    admin = factory.user(chat.client, role="admin")
    path = f"/conversations/{chat.conversation_id}/agent-messages"
    status, data, _ = api_client.call("POST", path, token=factory.token(admin), body={"role": "system", "content": "Handed to Ann"})
    assert status == 201 and data["message"]["role"] == "system"
    # the owner is a user: it speaks through /messages, not as the assistant
    assert api_client.call("POST", path, token=chat.token, body={"content": "I am the bot"})[0] == 403
    # a read-only key, a key of another client, a bad role
    reader = _key(api_client, factory, admin, ["messages:read"])
    assert api_client.call("POST", path, token=reader, body={"content": "x"})[0] == 403
    other_admin = factory.user(factory.client(), role="admin")
    foreign = _key(api_client, factory, other_admin, ["messages:write"])
    status, body, _ = api_client.call("POST", path, token=foreign, body={"content": "x"})
    assert status == 404 and str(chat.conversation_id) not in str(body)
    assert api_client.call("POST", path, token=factory.token(admin), body={"role": "user", "content": "x"})[0] == 422
    assert (
        api_client.call("POST", f"/conversations/{uuid.uuid4()}/agent-messages", token=factory.token(admin), body={"content": "x"})[0]
        == 404
    )
    assert [m.role for m in chat.messages()] == ["system"]


def test_human_mode_skips_n8n_and_is_pushed_as_conversation_updated(chat: ChatScenario, api_client, factory, aws, n8n):
    admin = factory.user(chat.client, role="admin")
    path = f"/conversations/{chat.conversation_id}"
    status, data, _ = api_client.call("PUT", path, token=factory.token(admin), body={"mode": "human"})
    assert status == 200 and data["conversation"]["mode"] == "human"
    updated = [e for e in aws.events(chat.connection_id) if e["type"] == "conversation.updated"]
    assert updated and updated[-1]["conversation"]["mode"] == "human"

    status, body = chat.send("I want a person")
    assert status == 201 and body["message"]["status"] == "sent"
    assert aws.invokes == [] and n8n.requests == []
    status, data, _ = api_client.call("POST", f"{path}/agent-messages", token=factory.token(admin), body={"content": "Hi, Ann here."})
    assert status == 201
    assert [e["message"]["content"] for e in aws.events(chat.connection_id) if e["type"] == "message.created"][-1] == "Hi, Ann here."

    # back to the bot: the next message goes to n8n again
    assert api_client.call("PUT", path, token=factory.token(admin), body={"mode": "bot"})[0] == 200
    status, body = chat.send("thanks, bot again")
    assert status == 201 and body["message"]["status"] == "pending"
    assert len(aws.invokes) == 1
