"""POST /conversations/{id}/messages and POST /messages/{id}/retry: ordering, idempotency, rate
limits, tenancy, turns queueing, and 20 concurrent senders - driven through the real handlers,
real Postgres, a real local HTTP n8n stand-in and a real HTTP fake of Lambda and @connections."""

from __future__ import annotations

import importlib.util
import json
import threading
import uuid

import pytest
from sqlalchemy import update

from bitworks.db import session_scope
from bitworks.models import Client, Conversation
from tests.support.events import LambdaContext, http_event
from tests.support.n8n_stub import ChatScenario, reply_json
from tests.support.template import ROOT

pytest_plugins = ["tests.support.n8n_stub"]  # fixtures: n8n, aws, chat, chat_settings


@pytest.mark.parametrize("field", ["output", "reply", "content"])
def test_message_starts_a_turn_and_the_reply_in_the_response_ends_it(chat, n8n, aws, field):
    n8n.then(reply_json({field: "Your order ships tomorrow.", "metadata": {"model": "demo"}}))
    status, body = chat.send("Where is my order?")
    assert status == 201, body
    message = body["message"]
    assert (message["role"], message["status"], message["seq"]) == ("user", "pending", 1)
    assert message["content"] == "Where is my order?"
    assert chat.conversation().active_message_id == uuid.UUID(message["id"])
    # The dispatch was invoked asynchronously with this turn.
    assert aws.invoked_functions == ["DispatchFunction"]
    assert aws.invokes[0]["message_id"] == message["id"] and uuid.UUID(aws.invokes[0]["turn_id"])
    assert chat.events() == [{"type": "message.created", "message": message}]

    assert chat.drive() == ["replied"]
    assert len(n8n.requests) == 1
    user_row, reply_row = chat.messages()
    assert (user_row.status, reply_row.role, reply_row.status, reply_row.seq) == ("replied", "assistant", "sent", 2)
    assert reply_row.in_reply_to == user_row.id and reply_row.content == "Your order ships tomorrow."
    assert reply_row.metadata_ == {"model": "demo", "pushed": True}
    assert "dispatch" not in user_row.metadata_
    types = [(e["type"], e.get("state")) for e in chat.events()]
    assert types == [("message.created", None), ("typing", "on"), ("message.created", None), ("typing", "off")]
    assert chat.events()[2]["message"]["id"] == str(reply_row.id)
    chat.assert_ended("replied")


def test_messages_sent_during_a_turn_wait_and_are_answered_in_order(chat, n8n, aws):
    ids = [chat.send(f"question {i}")[1]["message"]["id"] for i in range(3)]
    assert len(aws.invokes) == 1, "only the first message starts a turn"
    assert chat.drive() == ["replied"] * 3
    assert [r.json()["message"]["id"] for r in n8n.requests] == ids
    rows = chat.messages()
    assert [(r.seq, r.role) for r in rows] == [(i, "user") for i in (1, 2, 3)] + [(i, "assistant") for i in (4, 5, 6)]
    assert [str(r.in_reply_to) for r in rows[3:]] == ids
    for message_id in ids:
        chat.assert_ended("replied", message_id)


def test_client_message_id_is_idempotent(chat, aws):
    status, first = chat.send("hello", client_message_id="c-1")
    assert status == 201
    pushes, invokes = len(aws.pushes), len(aws.invokes)
    status, again = chat.send("hello", client_message_id="c-1")
    assert status == 200 and again == first
    assert (len(aws.pushes), len(aws.invokes)) == (pushes, invokes), "a repeat pushes nothing and starts nothing"
    status, body = chat.send("something else", client_message_id="c-1")
    assert status == 409 and body["error"]["code"] == "conflict"
    assert len(chat.messages()) == 1


def test_per_user_message_rate_comes_from_the_client(factory, api_client, aws, n8n):
    chat = ChatScenario(factory, api_client, aws, n8n, settings={"message_rate_per_minute": 2})
    assert [chat.send(f"m{i}")[0] for i in range(2)] == [201, 201]
    status, body, headers = api_client.call(
        "POST", f"/conversations/{chat.conversation_id}/messages", token=chat.token, body={"content": "m3"}
    )
    assert status == 429 and body["error"]["code"] == "rate_limited" and int(headers["Retry-After"]) >= 1
    assert len(chat.messages()) == 2
    # The count, the seq allocation and the insert are one statement: a refused message moves nothing.
    before = chat.conversation()
    assert before.last_seq == 2
    assert chat.send("m4", client_message_id="refused-again")[0] == 429
    after = chat.conversation()
    assert (after.last_seq, after.active_message_id, after.turn_id) == (2, before.active_message_id, before.turn_id)
    assert [m.seq for m in chat.messages()] == [1, 2]


def test_who_may_send_and_what(chat, factory, api_client):
    path = f"/conversations/{chat.conversation_id}/messages"
    admin = factory.user(chat.client, role="admin")
    assert api_client.call("POST", path, token=factory.token(admin), body={"content": "hi"})[0] == 403
    stranger = factory.user(factory.client())
    assert api_client.call("POST", path, token=factory.token(stranger), body={"content": "hi"})[0] == 404
    assert api_client.call("POST", path, body={"content": "hi"})[0] == 401
    for body, code in (
        ({"content": ""}, 422),
        ({"content": "   "}, 422),
        ({"content": "x" * 16001}, 422),
        ({"content": "hi", "extra": 1}, 422),
        ({"content": 5}, 422),
    ):
        status, data, _ = api_client.call("POST", path, token=chat.token, body=body)
        assert (status, data["error"]["code"]) == (code, "validation_error"), body
    status, data, _ = api_client.call("POST", path, token=chat.token, raw_body="{nope")
    assert (status, data["error"]["code"]) == (400, "invalid_json")
    status, data, _ = api_client.call("POST", "/conversations/not-a-uuid/messages", token=chat.token, body={"content": "hi"})
    assert status == 422
    assert api_client.call("POST", f"/conversations/{uuid.uuid4()}/messages", token=chat.token, body={"content": "hi"})[0] == 404
    with session_scope() as s:
        s.execute(update(Conversation).where(Conversation.id == chat.conversation_id).values(status="closed"))
    status, data = chat.send("hello?")
    assert status == 409 and data["error"]["code"] == "conflict"
    assert chat.messages() == []


def test_human_mode_stores_the_message_without_a_turn(chat, aws):
    with session_scope() as s:
        s.execute(update(Conversation).where(Conversation.id == chat.conversation_id).values(mode="human"))
    status, body = chat.send("a person, please")
    assert status == 201 and body["message"]["status"] == "sent"
    assert aws.invokes == [] and chat.conversation().active_message_id is None


def test_retry_a_failed_message(chat, n8n, aws, factory, api_client):
    n8n.then(reply_json({"error": "denied"}, status=403))
    message_id = chat.send("try me")[1]["message"]["id"]
    assert chat.drive() == ["failed"]
    chat.assert_ended("upstream_error")

    stranger = factory.user(factory.client())
    assert api_client.call("POST", f"/messages/{message_id}/retry", token=factory.token(stranger))[0] == 404
    admin = factory.user(chat.client, role="admin")
    assert api_client.call("POST", f"/messages/{message_id}/retry", token=factory.token(admin))[0] == 403
    assert api_client.call("POST", f"/messages/{uuid.uuid4()}/retry", token=chat.token)[0] == 404

    status, body, _ = api_client.call("POST", f"/messages/{message_id}/retry", token=chat.token)
    assert status == 200 and body["message"]["status"] == "pending" and body["message"]["id"] == message_id
    assert chat.messages()[0].error is None
    status, body, _ = api_client.call("POST", f"/messages/{message_id}/retry", token=chat.token)
    assert status == 409, "only a failed message can be retried"
    assert chat.drive() == ["replied"]
    rows = chat.messages()
    assert [(r.role, r.status) for r in rows] == [("user", "replied"), ("assistant", "sent")]
    assert rows[1].content == "echo: try me"
    # The retry's turn has a new delivery id.
    assert n8n.requests[0].headers["x-bitworks-delivery"] != n8n.requests[1].headers["x-bitworks-delivery"]
    status, body, _ = api_client.call("POST", f"/messages/{rows[1].id}/retry", token=chat.token)
    assert status == 409


def _fresh_handler(index: int):
    """A separate copy of the create_message module per thread, like separate Lambda containers
    (one resolver per process: Powertools keeps the current event on the app object)."""
    path = ROOT / "functions" / "messages" / "create_message.py"
    spec = importlib.util.spec_from_file_location(f"_create_message_copy_{index}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


def test_twenty_concurrent_messages_are_ordered_and_each_answered_once(chat, n8n, aws):
    with session_scope() as s:
        s.execute(update(Client).where(Client.id == chat.client.id).values(settings={"message_rate_per_minute": 100}))
    handlers = [_fresh_handler(i) for i in range(20)]
    path = f"/conversations/{chat.conversation_id}/messages"
    route = "/conversations/{conversation_id}/messages"
    start = threading.Barrier(20)
    results: list = [None] * 20

    def send(i: int) -> None:
        event = http_event(
            "POST",
            path,
            route=route,
            path_params={"conversation_id": str(chat.conversation_id)},
            body={"content": f"message {i}", "client_message_id": f"cm-{i}"},
            token=chat.token,
        )
        start.wait()
        response = handlers[i](event, LambdaContext("CreateMessageFunction"))
        results[i] = (response["statusCode"], json.loads(response["body"]))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(r is not None and r[0] == 201 for r in results), [r for r in results if r is None or r[0] != 201]
    seqs = sorted(r[1]["message"]["seq"] for r in results)
    assert seqs == list(range(1, 21)), "distinct, consecutive seq"
    assert len(aws.invokes) == 1, "exactly one turn started"

    outcomes = chat.drive()
    assert outcomes == ["replied"] * 20
    rows = chat.messages()
    users = [r for r in rows if r.role == "user"]
    replies = [r for r in rows if r.role == "assistant"]
    assert [r.seq for r in users] == list(range(1, 21)) and all(r.status == "replied" for r in users)
    assert [r.in_reply_to for r in replies] == [r.id for r in users], "replies in the order of the messages"
    assert [r.content for r in replies] == [f"echo: {u.content}" for u in users]
    assert [r.json()["message"]["seq"] for r in n8n.requests] == list(range(1, 21))
    for user_row in users:
        chat.assert_ended("replied", user_row.id)
