"""What ends turns when the happy path does not: the sweeper (expired turns, stale connections,
old counters and tickets), the dispatch's failure destination, and crash recovery of pushes."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update

from bitworks import outbox
from bitworks.db import session_scope
from bitworks.models import Connection, Conversation, Message, RateLimit, WsTicket
from bitworks.services import chat as chat_service
from tests.support.n8n_stub import reply_json
from tests.support.template import load_handler

pytest_plugins = ["tests.support.n8n_stub"]  # fixtures: n8n, aws, chat, chat_settings

PAST = datetime(2000, 1, 1, tzinfo=timezone.utc)


def _expire_turn(chat):
    with session_scope() as s:
        s.execute(update(Conversation).where(Conversation.id == chat.conversation_id).values(turn_expires_at=PAST))


def test_sweeper_fails_a_turn_whose_callback_never_came_and_starts_the_next(chat, n8n, aws):
    n8n.then(reply_json({"message": "Workflow was started"}))
    first = chat.send("first")[1]["message"]
    assert chat.drive() == ["callback"]
    second = chat.send("second")[1]["message"]
    assert load_handler("SweeperFunction")({}, None)["turns_expired"] == 0, "not expired yet"
    _expire_turn(chat)
    counts = load_handler("SweeperFunction")({"source": "aws.events"}, None)
    assert counts["turns_expired"] == 1
    rows = {str(r.id): r for r in chat.messages()}
    assert rows[first["id"]].status == "failed"
    assert rows[first["id"]].error == {"code": "upstream_timeout", "message": "the assistant did not answer in time"}
    failed = [e for e in chat.events() if e["type"] == "message.failed"]
    assert [e["message_id"] for e in failed] == [first["id"]]
    assert chat.events()[-1]["state"] == "off"
    # The waiting message got its turn.
    assert chat.conversation().active_message_id == uuid.UUID(second["id"])
    assert chat.drive() == ["replied"]
    chat.assert_ended("replied", second["id"])
    assert load_handler("SweeperFunction")({}, None)["turns_expired"] == 0


def test_sweeper_fails_a_lost_dispatch(chat, aws):
    chat.send("nobody dispatches me")
    aws.take_invokes()  # the async invoke was lost
    _expire_turn(chat)
    assert chat_service.sweep()["turns_expired"] == 1
    chat.assert_ended("upstream_timeout")


def test_sweeper_starts_a_stalled_queue(chat, aws):
    chat.send("hello")
    aws.take_invokes()
    with session_scope() as s:  # a pending message with no turn (should never happen)
        s.execute(
            update(Conversation)
            .where(Conversation.id == chat.conversation_id)
            .values(active_message_id=None, turn_id=None, turn_expires_at=None)
        )
    assert chat_service.sweep()["turns_started"] == 1
    assert len(aws.invokes) == 1 and chat.drive() == ["replied"]


def test_sweeper_removes_stale_connections_counters_and_tickets(chat, aws, factory):
    now = datetime.now(timezone.utc)
    user = chat.user

    def connection(cid, connected, seen):
        return Connection(
            connection_id=cid, user_id=user.id, client_id=user.client_id, connected_at=now - connected, last_seen_at=now - seen
        )

    with session_scope() as s:
        s.add_all(
            [
                connection("too-old", timedelta(hours=2, minutes=1), timedelta(0)),
                connection("idle", timedelta(minutes=30), timedelta(minutes=11)),
                connection("fresh", timedelta(minutes=90), timedelta(minutes=2)),
                RateLimit(key="old", window_start=now - timedelta(hours=1), window_end=now - timedelta(minutes=59), count=3),
                RateLimit(key="current", window_start=now - timedelta(seconds=10), window_end=now + timedelta(seconds=50), count=1),
                WsTicket(ticket_hash="a" * 64, user_id=user.id, token_version=0, expires_at=now - timedelta(seconds=1)),
                WsTicket(ticket_hash="b" * 64, user_id=user.id, token_version=0, expires_at=now + timedelta(seconds=50)),
            ]
        )
    counts = chat_service.sweep()
    assert counts == {
        "turns_expired": 0,
        "turns_started": 0,
        "connections_removed": 2,
        "rate_limits_purged": 1,
        "tickets_purged": 1,
        "imports_expired": 0,
        "replies_repushed": 0,
    }
    with session_scope() as s:
        assert set(s.scalars(select(Connection.connection_id))) == {"fresh", chat.connection_id}
        assert list(s.scalars(select(RateLimit.key))) == ["current"]
        assert list(s.scalars(select(WsTicket.ticket_hash))) == ["b" * 64]
    assert sorted(aws.deleted) == ["idle", "too-old"]


def _failure_record(payload, condition="RetriesExhausted"):
    return {
        "version": "1.0",
        "timestamp": "2026-11-22T10:15:30.000Z",
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:bitworks-DispatchFunction-AbC123:$LATEST",
            "condition": condition,
            "approximateInvokeCount": 2,
        },
        "requestPayload": payload,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "boom", "errorType": "OperationalError"},
    }


def test_turn_failure_record_fails_the_turn_and_starts_the_next_on_the_dispatch(chat, aws):
    first = chat.send("first")[1]["message"]
    second = chat.send("second")[1]["message"]
    payload = aws.take_invokes()[0]
    handler = load_handler("TurnFailureFunction")
    assert handler(_failure_record(payload), None) == {"result": "failed"}
    rows = {str(r.id): r for r in chat.messages()}
    assert rows[first["id"]].status == "failed"
    assert rows[first["id"]].error == {"code": "upstream_error", "message": "the assistant could not be reached"}
    events = chat.events()
    assert [e for e in events if e["type"] == "message.failed"] == [
        {
            "type": "message.failed",
            "message_id": first["id"],
            "conversation_id": str(chat.conversation_id),
            "error": {"code": "upstream_error", "message": "the assistant could not be reached"},
        }
    ]
    assert events[-1] == {"type": "typing", "conversation_id": str(chat.conversation_id), "state": "off"}
    # The next turn is dispatched on the function that failed (qualifier stripped).
    assert aws.invoked_functions[-1] == "arn:aws:lambda:us-east-1:123456789012:function:bitworks-DispatchFunction-AbC123"
    assert aws.invokes[-1]["message_id"] == second["id"]
    # A second record for the same turn (or an old one) changes nothing.
    assert handler(_failure_record(payload, "EventAgeExceeded"), None) == {"result": "noop"}
    assert handler({"requestContext": {}, "requestPayload": {}}, None) == {"result": "ignored"}
    assert len([e for e in chat.events() if e["type"] == "message.failed"]) == 1


def test_a_crash_between_commit_and_push_is_pushed_once_by_the_retry(chat, n8n, aws):
    chat.send("first")
    second = chat.send("second")[1]["message"]
    payload = aws.take_invokes()[0]
    pushes_before = len(aws.pushes)
    # The reply is stored and committed, then the process dies: no push, no next invoke.
    with session_scope() as s:
        stored = chat_service.complete_turn(s, uuid.UUID(payload["message_id"]), uuid.UUID(payload["turn_id"]), "stored")
        assert stored is not None
        outbox.discard(s)
    assert len(aws.pushes) == pushes_before and aws.invokes == []
    assert chat.messages()[2].metadata_ == {}

    # Lambda retries the same event: nothing stored twice, the reply pushed now, the next turn started.
    assert chat.dispatch(payload)["result"] == "recovered"
    replies = [r for r in chat.messages() if r.role == "assistant"]
    assert len(replies) == 1 and replies[0].metadata_ == {"pushed": True}
    pushed = [e for e in chat.events() if e["type"] == "message.created" and e["message"]["role"] == "assistant"]
    assert [e["message"]["id"] for e in pushed] == [str(replies[0].id)]
    assert chat.events()[-1]["state"] == "off"
    assert [i["message_id"] for i in aws.invokes] == [second["id"]]
    assert len(n8n.requests) == 0

    # Another retry: nothing more.
    pushes = len(aws.pushes)
    assert chat.dispatch(payload)["result"] == "noop"
    assert len(aws.pushes) == pushes
    assert chat.drive() == ["replied"]
    chat.assert_ended("replied", second["id"])


def test_a_gone_connection_is_deleted_and_the_others_still_receive(chat, n8n, aws):
    with session_scope() as s:
        s.add(Connection(connection_id="gone-one", user_id=chat.user.id, client_id=chat.client.id))
    aws.gone.add("gone-one")
    chat.send("hello")
    assert chat.drive() == ["replied"]
    with session_scope() as s:
        assert set(s.scalars(select(Connection.connection_id))) == {chat.connection_id}
    chat.assert_ended("replied")
    assert not [e for cid, e in aws.pushes if cid == "gone-one"]


def test_message_ids_of_other_clients_are_not_dispatchable_by_guessing(chat, aws):
    # A made-up turn for a real message: the turn id does not match, nothing happens.
    message_id = chat.send("hello")[1]["message"]["id"]
    aws.take_invokes()
    assert chat.dispatch({"message_id": message_id, "turn_id": str(uuid.uuid4())})["result"] == "noop"
    with session_scope() as s:
        assert s.get(Message, uuid.UUID(message_id)).status == "pending"


def test_a_reply_whose_push_failed_is_pushed_again_by_the_sweeper(chat, n8n, aws):
    aws.failing[chat.connection_id] = 503  # API Gateway down for longer than the push's retries
    chat.send("hello")
    assert chat.drive() == ["replied"]
    reply = next(m for m in chat.messages() if m.role == "assistant")
    assert "pushed" not in reply.metadata_ and chat.events() == []

    assert chat_service.sweep()["replies_repushed"] == 0  # too fresh: the normal path may still be on it
    with session_scope() as s:  # half a minute later
        s.execute(update(Message).where(Message.id == reply.id).values(timestamp=Message.timestamp - timedelta(seconds=31)))
    assert chat_service.sweep()["replies_repushed"] == 1  # still failing: stays unmarked, tried again later
    assert chat.events() == []

    del aws.failing[chat.connection_id]
    assert chat_service.sweep()["replies_repushed"] == 1
    pushed = [e["message"] for e in chat.events() if e["type"] == "message.created"]
    assert [m["id"] for m in pushed] == [str(reply.id)] and pushed[0]["content"] == reply.content
    assert next(m for m in chat.messages() if m.role == "assistant").metadata_ == {"pushed": True}
    assert chat_service.sweep()["replies_repushed"] == 0  # once

    with session_scope() as s:  # a reply older than the window is left alone (its sockets are gone)
        s.execute(update(Message).where(Message.id == reply.id).values(metadata_={}, timestamp=PAST))
    assert chat_service.sweep()["replies_repushed"] == 0
