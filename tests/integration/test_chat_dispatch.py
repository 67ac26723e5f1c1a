"""The dispatch Lambda against a real local HTTP n8n stand-in: payload and signature, the answers
n8n can give (reply, ack, errors, garbage, silence) and the retries, idempotency of the dispatch."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
import uuid

import jwt
import pytest
from sqlalchemy import update

from bitworks.db import session_scope
from bitworks.models import Client, Context, Conversation, Message, Template
from tests.support.n8n_stub import Answer, ChatScenario, closed_port_url, reply_hang, reply_json, reply_raw

pytest_plugins = ["tests.support.n8n_stub"]  # fixtures: n8n, aws, chat, chat_settings

JWT_SECRET = "test-secret-" + "x" * 40


def _valid_signature(chat: ChatScenario, request) -> bool:
    stamp = request.headers["x-bitworks-timestamp"]
    expected = hmac.new(chat.client.signing_secret.encode(), stamp.encode() + b"." + request.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(request.headers["x-bitworks-signature"], f"sha256={expected}")


def test_payload_headers_and_signature_follow_the_contract(chat, n8n, aws):
    with session_scope() as s:
        template = Template(client_id=chat.client.id, name="Support", content="Be kind to {{name}}")
        s.add(template)
        s.flush()
        s.execute(update(Conversation).where(Conversation.id == chat.conversation_id).values(template_id=template.id))
        s.add(Context(conversation_id=chat.conversation_id, context_window=3, parameters={"name": "Ann"}))
    for i in range(3):  # history: user, assistant, user, assistant, user, assistant
        chat.send(f"earlier {i}")
        chat.drive()
    body = chat.send("the current one")[1]
    message = body["message"]
    turn_id = aws.invokes[0]["turn_id"]
    chat.drive()

    request = n8n.requests[-1]
    payload = request.json()
    assert set(payload) == {"event", "delivery_id", "client", "conversation", "message", "context", "template", "reply"}
    assert payload["event"] == "message.created" and payload["delivery_id"] == turn_id
    assert payload["client"] == {"id": str(chat.client.id), "name": chat.client.name}
    assert payload["conversation"] == {"id": str(chat.conversation_id), "title": "Order help", "user_id": str(chat.user.id)}
    assert payload["message"] == {
        "id": message["id"],
        "seq": 7,
        "role": "user",
        "content": "the current one",
        "timestamp": message["timestamp"],
    }
    context = payload["context"]
    assert context["context_window"] == 3 and context["parameters"] == {"name": "Ann"}
    # The window before this message, oldest first, without the message itself.
    assert [(m["role"], m["content"]) for m in context["messages"]] == [
        ("assistant", "echo: earlier 1"),
        ("user", "earlier 2"),
        ("assistant", "echo: earlier 2"),
    ]
    assert all(set(m) == {"role", "content", "timestamp"} for m in context["messages"])
    assert payload["template"] == {"id": str(template.id), "name": "Support", "content": "Be kind to {{name}}"}
    reply = payload["reply"]
    assert reply["url"] == "http://127.0.0.1:3000/n8n/replies"
    claims = jwt.decode(reply["token"], JWT_SECRET, algorithms=["HS256"], audience="bitworks-n8n-reply")
    assert (claims["sub"], claims["tid"]) == (message["id"], turn_id)
    assert reply["expires_at"].endswith("Z")

    headers = request.headers
    assert headers["x-n8n-key"] == "header-secret-value"
    assert headers["x-bitworks-delivery"] == turn_id
    assert headers["content-type"] == "application/json"
    assert abs(int(headers["x-bitworks-timestamp"]) - time.time()) < 60
    assert _valid_signature(chat, request)
    tampered = type(request)(request.method, request.path, request.headers, request.body.replace(b"current", b"CURRENT"))
    assert not _valid_signature(chat, tampered)


def test_no_template_and_no_header_auth(factory, api_client, aws, n8n):
    chat = ChatScenario(factory, api_client, aws, n8n, n8n_auth_header_name=None, n8n_auth_header_value=None)
    chat.send("hi")
    chat.drive()
    request = n8n.requests[0]
    assert request.json()["template"] is None and request.json()["context"]["messages"] == []
    assert "x-n8n-key" not in request.headers and _valid_signature(chat, request)


def test_500_then_200_is_retried_with_the_same_delivery(chat, n8n):
    n8n.then(reply_raw("boom", status=500), reply_json({"output": "second time lucky"}))
    chat.send("hello")
    assert chat.drive() == ["replied"]
    first, second = n8n.requests
    assert first.headers["x-bitworks-delivery"] == second.headers["x-bitworks-delivery"]
    assert _valid_signature(chat, first) and _valid_signature(chat, second)
    assert chat.messages()[1].content == "second time lucky"
    chat.assert_ended("replied")


def test_429_is_retried_after_retry_after(chat, n8n):
    n8n.then(reply_json({"message": "slow down"}, status=429, headers={"Retry-After": "1"}), reply_json({"output": "ok"}))
    chat.send("hello")
    started = time.monotonic()
    assert chat.drive() == ["replied"]
    assert time.monotonic() - started >= 0.9, "Retry-After honoured"
    assert len(n8n.requests) == 2
    chat.assert_ended("replied")


def test_a_4xx_fails_at_once(chat, n8n):
    n8n.then(reply_raw("Authorization data is wrong!", status=403, content_type="text/plain"))
    message_id = chat.send("hello")[1]["message"]["id"]
    assert chat.drive() == ["failed"]
    assert len(n8n.requests) == 1
    row = chat.messages()[0]
    assert row.status == "failed" and row.error == {"code": "upstream_error", "message": "n8n answered HTTP 403"}
    failed = [e for e in chat.events() if e["type"] == "message.failed"]
    assert failed == [
        {
            "type": "message.failed",
            "message_id": message_id,
            "conversation_id": str(chat.conversation_id),
            "error": {"code": "upstream_error", "message": "n8n answered HTTP 403"},
        }
    ]
    chat.assert_ended("upstream_error")


def test_5xx_every_time_fails_after_the_last_attempt(chat, n8n):
    n8n.default = reply_raw("down", status=503)
    chat.send("hello")
    assert chat.drive() == ["failed"]
    assert len(n8n.requests) == 3  # N8N_MAX_ATTEMPTS default
    chat.assert_ended("upstream_error")


@pytest.mark.parametrize(
    "answer",
    [
        reply_raw("<html><body>Workflow ok</body></html>"),
        reply_raw('{"output": "unterminated', content_type="application/json"),
        reply_json({"output": ""}),
        reply_json({"output": "   "}),
        reply_json({"output": 42}),
        reply_json({"output": "x" * 16001}),
        reply_json({"output": "x" * 1_000_000}),
        Answer(200, b'{"output": "' + b"y" * (1024 * 1024 + 10) + b'"}', {"Content-Type": "application/json"}),
    ],
    ids=["html", "invalid-json", "empty-output", "blank-output", "non-string", "16001-chars", "1MB", "over-cap"],
)
def test_unusable_2xx_answers_fail_the_turn(chat, n8n, answer):
    n8n.then(answer)
    chat.send("hello")
    assert chat.drive() == ["failed"]
    assert len(n8n.requests) == 1, "not retried"
    row = chat.messages()[0]
    assert row.status == "failed" and row.error["code"] == "upstream_error"
    assert len(chat.messages()) == 1, "no reply stored"
    chat.assert_ended("upstream_error")


@pytest.mark.parametrize("answer", [reply_raw(b"", content_type="application/json"), Answer(204, b"", {})], ids=["200-empty", "204"])
def test_an_empty_2xx_is_an_acknowledgement(chat, n8n, answer):
    n8n.then(answer)
    chat.send("hello")
    assert chat.drive() == ["callback"]
    assert chat.messages()[0].status == "pending"


def test_exactly_16000_characters_is_a_reply(chat, n8n):
    n8n.then(reply_json([{"output": "z" * 16000}]))  # n8n "All Entries" wraps the item in a list
    chat.send("long one")
    assert chat.drive() == ["replied"]
    assert len(chat.messages()[1].content) == 16000


def test_unreachable_n8n_fails_with_upstream_error(factory, api_client, aws):
    chat = ChatScenario(factory, api_client, aws, None, n8n_webhook_url=closed_port_url())
    chat.send("anyone there?")
    assert chat.drive() == ["failed"]
    assert chat.messages()[0].error["code"] == "upstream_error"
    chat.assert_ended("upstream_error")


def test_no_webhook_configured_fails_at_once(factory, api_client, aws):
    chat = ChatScenario(factory, api_client, aws, None, n8n_webhook_url=None)
    chat.send("anyone there?")
    assert chat.drive() == ["failed"]
    assert chat.messages()[0].error == {"code": "upstream_error", "message": "no n8n webhook URL is configured"}
    chat.assert_ended("upstream_error")


def test_slow_n8n_past_the_read_timeout_fails_with_upstream_timeout(chat, n8n, chat_settings):
    chat_settings(N8N_READ_TIMEOUT="0.5", N8N_MAX_ATTEMPTS="2")
    n8n.default = reply_hang(5)
    chat.send("take your time")
    started = time.monotonic()
    assert chat.drive() == ["failed"]
    assert time.monotonic() - started < 4
    assert len(n8n.requests) == 2
    assert chat.messages()[0].error["code"] == "upstream_timeout"
    chat.assert_ended("upstream_timeout")


def test_a_second_dispatch_of_the_same_turn_does_nothing(chat, n8n, aws):
    chat.send("once")
    payload = aws.invokes[0]
    assert chat.drive() == ["replied"]
    assert chat.dispatch(payload)["result"] == "noop"
    assert len(n8n.requests) == 1 and len(chat.messages()) == 2
    chat.assert_ended("replied")
    assert chat.dispatch({"message_id": "nope"})["result"] == "ignored"
    assert chat.dispatch({"message_id": str(uuid.uuid4()), "turn_id": str(uuid.uuid4())})["result"] == "gone"


def test_a_duplicate_dispatch_while_the_first_is_sending_does_nothing(chat, n8n, aws):
    release = threading.Event()
    arrived = threading.Event()

    def held(_request):
        arrived.set()
        release.wait(10)
        return reply_json({"output": "done"})

    n8n.then(held)
    chat.send("hello")
    payload = aws.take_invokes()[0]
    first: dict = {}
    worker = threading.Thread(target=lambda: first.update(chat.dispatch(payload)))
    worker.start()
    assert arrived.wait(10)
    assert chat.dispatch(payload)["result"] == "noop"  # the claim's lease is still running
    release.set()
    worker.join(10)
    assert first["result"] == "replied"
    assert len(n8n.requests) == 1 and len(chat.messages()) == 2
    chat.assert_ended("replied")


def test_a_retry_after_a_crash_mid_send_sends_again_once_the_lease_ran_out(chat, n8n, aws):
    chat.send("hello")
    payload = aws.take_invokes()[0]
    # A dispatch that claimed the turn and then died: the lease is in the past.
    with session_scope() as s:
        row = s.get(Message, uuid.UUID(payload["message_id"]))
        row.metadata_ = {"dispatch": {"state": "sending", "lease_until": "2000-01-01T00:00:00Z"}}
    assert chat.dispatch(payload)["result"] == "replied"
    assert n8n.requests[0].headers["x-bitworks-delivery"] == payload["turn_id"]
    chat.assert_ended("replied")


def test_the_stack_default_webhook_is_used_when_the_client_has_none(factory, api_client, aws, n8n, chat_settings):
    chat_settings(N8N_WEBHOOK_URL=n8n.url)
    chat = ChatScenario(factory, api_client, aws, n8n, n8n_webhook_url=None)
    chat.send("hi")
    assert chat.drive() == ["replied"]
    with session_scope() as s:
        assert s.get(Client, chat.client.id).n8n_webhook_url is None
    assert len(n8n.requests) == 1
