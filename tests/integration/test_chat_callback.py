"""Callback style: n8n acknowledges, then POSTs /n8n/replies with the reply token it was sent."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import jwt
from sqlalchemy import update

from bitworks.db import session_scope
from bitworks.models import Conversation
from tests.support.n8n_stub import reply_json

pytest_plugins = ["tests.support.n8n_stub"]  # fixtures: n8n, aws, chat, chat_settings

JWT_SECRET = "test-secret-" + "x" * 40
ACK = {"message": "Workflow was started"}


def _acknowledged(chat, n8n, content="hello"):
    n8n.then(reply_json(ACK))
    message = chat.send(content)[1]["message"]
    assert chat.drive() == ["callback"]
    return message, n8n.requests[-1].json()["reply"]


def _post(api_client, token, body, raw=None):
    headers = {"authorization": f"Bearer {token}"} if token else None
    status, data, _ = api_client.call("POST", "/n8n/replies", body=None if raw else body, raw_body=raw, headers=headers)
    return status, data


def test_acknowledged_turn_waits_then_the_callback_completes_it(chat, n8n, aws, api_client):
    message, reply = _acknowledged(chat, n8n)
    row = chat.messages()[0]
    assert row.status == "pending"
    conversation = chat.conversation()
    assert conversation.active_message_id == row.id
    expires = reply["expires_at"].replace("Z", "+00:00")
    assert abs(conversation.turn_expires_at.timestamp() - datetime.fromisoformat(expires).timestamp()) < 1
    assert chat.events()[-1]["state"] == "on", "typing stays on while n8n works"

    answer = {"message_id": message["id"], "content": "Here you go", "metadata": {"k": 1}}
    status, body = _post(api_client, reply["token"], answer)
    assert status == 201, body
    assert body["message"]["role"] == "assistant" and body["message"]["in_reply_to"] == message["id"]
    assert body["message"]["metadata"] == {"k": 1}
    user_row, reply_row = chat.messages()
    assert user_row.status == "replied" and reply_row.metadata_ == {"k": 1, "pushed": True}
    pushed = [e for e in chat.events() if e["type"] == "message.created" and e["message"]["role"] == "assistant"]
    assert pushed[0]["message"]["id"] == body["message"]["id"]
    chat.assert_ended("replied")

    # A repeat: 200 with the stored reply, nothing stored, nothing pushed.
    pushes = len(aws.pushes)
    status, again = _post(api_client, reply["token"], {"message_id": message["id"], "content": "Here you go again"})
    assert status == 200 and again["message"]["id"] == body["message"]["id"] and again["message"]["content"] == "Here you go"
    assert len(aws.pushes) == pushes and len(chat.messages()) == 2


def test_a_dispatch_repeated_while_awaiting_the_callback_sends_nothing(chat, n8n, aws):
    n8n.then(reply_json(ACK))
    chat.send("hello")
    payload = aws.invokes[0]
    chat.drive()
    assert chat.dispatch(payload)["result"] == "noop"
    assert len(n8n.requests) == 1


def test_the_next_message_waits_for_the_callback(chat, n8n, aws, api_client):
    message, reply = _acknowledged(chat, n8n)
    second = chat.send("and another thing")[1]["message"]
    assert aws.take_invokes() == [], "the second message waits"
    assert _post(api_client, reply["token"], {"message_id": message["id"], "content": "first answer"})[0] == 201
    assert chat.drive() == ["replied"]
    assert n8n.requests[-1].json()["message"]["id"] == second["id"]
    assert [r.status for r in chat.messages() if r.role == "user"] == ["replied", "replied"]


def test_bad_reply_tokens_are_401(chat, n8n, api_client, factory):
    message, reply = _acknowledged(chat, n8n)
    body = {"message_id": message["id"], "content": "sneaky"}
    claims = jwt.decode(reply["token"], JWT_SECRET, algorithms=["HS256"], audience="bitworks-n8n-reply")
    expired = jwt.encode({**claims, "iat": int(time.time()) - 600, "exp": int(time.time()) - 300}, JWT_SECRET, algorithm="HS256")
    forged = jwt.encode(claims, "another-secret-" + "y" * 40, algorithm="HS256")
    other_message = jwt.encode({**claims, "sub": str(uuid.uuid4())}, JWT_SECRET, algorithm="HS256")
    user_jwt = factory.token(chat.user)
    for token in (None, "garbage", expired, forged, other_message, user_jwt):
        status, data = _post(chat.api, token, body)
        assert (status, data["error"]["code"]) == (401, "unauthorized"), token
    assert len(chat.messages()) == 1 and chat.messages()[0].status == "pending"
    # A good token is checked before the body: no token, bad body -> still 401.
    assert _post(api_client, None, None, raw="{nope")[0] == 401
    status, data = _post(api_client, reply["token"], None, raw="{nope")
    assert (status, data["error"]["code"]) == (400, "invalid_json")
    for bad in (
        {"message_id": message["id"], "content": ""},
        {"message_id": message["id"], "content": "x" * 16001},
        {"message_id": message["id"]},
        {"message_id": "nope", "content": "x"},
    ):
        status, data = _post(api_client, reply["token"], bad)
        assert (status, data["error"]["code"]) == (422, "validation_error"), bad


def test_callback_after_the_turn_failed_is_409(chat, n8n, aws, api_client):
    message, reply = _acknowledged(chat, n8n)
    with session_scope() as s:  # the reply token's time ran out
        past = datetime(2000, 1, 1, tzinfo=timezone.utc)
        s.execute(update(Conversation).where(Conversation.id == chat.conversation_id).values(turn_expires_at=past))
    from tests.support.template import load_handler

    counts = load_handler("SweeperFunction")({}, None)
    assert counts["turns_expired"] == 1
    status, data = _post(api_client, reply["token"], {"message_id": message["id"], "content": "too late"})
    assert (status, data["error"]["code"]) == (409, "conflict")
    assert [r.status for r in chat.messages()] == ["failed"]
    chat.assert_ended("upstream_timeout")


def test_a_callback_faster_than_the_ack_wins_and_the_ack_changes_nothing(chat, n8n, aws, api_client):
    def call_back_first(request):
        payload = request.json()
        status, _ = _post(api_client, payload["reply"]["token"], {"message_id": payload["message"]["id"], "content": "quick"})
        assert status == 201
        return reply_json(ACK)

    n8n.then(call_back_first)
    chat.send("hello")
    assert chat.drive() == ["noop"]
    assert [r.content for r in chat.messages()] == ["hello", "quick"]
    chat.assert_ended("replied")
