"""WebSocket route handlers, invoked in-process with API Gateway-shaped events against real Postgres."""

from __future__ import annotations

import importlib.util
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from tests.support.events import LambdaContext, ws_event
from tests.support.template import load_handler

FUNCTIONS = {
    "$connect": "WsConnectFunction",
    "$disconnect": "WsDisconnectFunction",
    "sendMessage": "WsSendMessageFunction",
    "subscribe": "WsSubscribeFunction",
    "ping": "WsPingFunction",
    "$default": "WsDefaultFunction",
}


def invoke(route_key: str, connection_id: str, **kwargs: Any) -> dict[str, Any]:
    logical_id = FUNCTIONS[route_key]
    return load_handler(logical_id)(ws_event(route_key, connection_id, **kwargs), LambdaContext(logical_id))


def reply(response: dict[str, Any]) -> Any:
    """The route response API Gateway would send back on the socket (None: nothing sent)."""
    assert response["statusCode"] == 200, response
    return json.loads(response["body"]) if response.get("body") else None


def ticket_for(api_client: Any, factory: Any, user: Any) -> str:
    status, body, _ = api_client.call("POST", "/auth/ws-ticket", token=factory.token(user))
    assert status == 200, body
    return body["ticket"]


def connect(api_client: Any, factory: Any, user: Any, connection_id: str | None = None) -> str:
    connection_id = connection_id or f"c-{uuid.uuid4().hex[:12]}="
    response = invoke("$connect", connection_id, query={"ticket": ticket_for(api_client, factory, user)})
    assert response == {"statusCode": 200}
    return connection_id


def connection_row(db: Any, connection_id: str) -> Any:
    with db.connect() as conn:
        return conn.execute(text("SELECT * FROM connections WHERE connection_id = :c"), {"c": connection_id}).mappings().first()


def make_conversation(owner: Any) -> uuid.UUID:
    from bitworks.db import session_scope
    from bitworks.models import Conversation

    with session_scope() as session:
        row = Conversation(id=uuid.uuid4(), client_id=owner.client_id, user_id=owner.id, title="Help")
        session.add(row)
    return row.id


# -- $connect / $disconnect ----------------------------------------------------------------------
def test_connect_with_ticket_stores_the_connection(api_client, factory, db):
    client = factory.client()
    user = factory.user(client)
    connection_id = connect(api_client, factory, user, "abc123=")
    row = connection_row(db, "abc123=")
    assert row["user_id"] == user.id and row["client_id"] == client.id
    assert row["connected_at"] is not None and row["last_seen_at"] is not None
    assert connection_id == "abc123="


def test_ticket_is_single_use(api_client, factory, db):
    user = factory.user(factory.client())
    ticket = ticket_for(api_client, factory, user)
    assert invoke("$connect", "first=", query={"ticket": ticket}) == {"statusCode": 200}
    assert invoke("$connect", "second=", query={"ticket": ticket}) == {"statusCode": 401}
    assert connection_row(db, "second=") is None


def test_expired_ticket_is_rejected(api_client, factory, db):
    user = factory.user(factory.client())
    ticket = ticket_for(api_client, factory, user)
    with db.begin() as conn:
        conn.execute(text("UPDATE ws_tickets SET expires_at = now() - interval '1 second'"))
    assert invoke("$connect", "late=", query={"ticket": ticket}) == {"statusCode": 401}
    assert connection_row(db, "late=") is None


@pytest.mark.parametrize(
    "query",
    [None, {}, {"ticket": ""}, {"ticket": "wst_" + "0" * 48}, {"ticket": "x" * 5000}, {"other": "1"}],
    ids=["no-query", "empty-query", "empty", "unknown", "huge", "other-param"],
)
def test_missing_or_bad_ticket_is_rejected_not_500(factory, db, query, capsys):
    response = invoke("$connect", "bad=", query=query)
    assert response == {"statusCode": 401}
    assert connection_row(db, "bad=") is None
    if query and query.get("ticket"):
        assert query["ticket"] not in capsys.readouterr().out  # the ticket is never logged


def test_ticket_of_a_revoked_token_version_is_rejected(api_client, factory, db):
    user = factory.user(factory.client())
    ticket = ticket_for(api_client, factory, user)
    with db.begin() as conn:
        conn.execute(text("UPDATE users SET token_version = token_version + 1 WHERE id = :u"), {"u": user.id})
    assert invoke("$connect", "revoked=", query={"ticket": ticket}) == {"statusCode": 401}


def test_disconnect_removes_the_row_and_its_subscriptions(api_client, factory, db):
    client = factory.client()
    admin, owner = factory.user(client, "admin"), factory.user(client)
    conversation_id = make_conversation(owner)
    connection_id = connect(api_client, factory, admin)
    subscribe = {"action": "subscribe", "conversation_id": str(conversation_id)}
    assert reply(invoke("subscribe", connection_id, body=subscribe))["type"] == "subscribed"

    assert invoke("$disconnect", connection_id) == {"statusCode": 200}
    assert connection_row(db, connection_id) is None
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM subscriptions")).scalar() == 0
    # A second (or unknown) $disconnect is harmless.
    assert invoke("$disconnect", connection_id) == {"statusCode": 200}


# -- ping and last_seen_at -----------------------------------------------------------------------
def _age_connection(db: Any, connection_id: str) -> datetime:
    old = datetime.now(UTC) - timedelta(minutes=9)
    with db.begin() as conn:
        conn.execute(text("UPDATE connections SET last_seen_at = :t WHERE connection_id = :c"), {"t": old, "c": connection_id})
    return old


def test_ping_pongs_and_refreshes_last_seen_at(api_client, factory, db):
    connection_id = connect(api_client, factory, factory.user(factory.client()))
    old = _age_connection(db, connection_id)
    assert reply(invoke("ping", connection_id, body={"action": "ping"})) == {"type": "pong"}
    assert connection_row(db, connection_id)["last_seen_at"] > old + timedelta(minutes=8)


def test_a_failing_message_still_refreshes_last_seen_at(api_client, factory, db):
    connection_id = connect(api_client, factory, factory.user(factory.client()))
    old = _age_connection(db, connection_id)
    event = reply(invoke("$default", connection_id, raw_body="{not json"))
    assert event["error"]["code"] == "invalid_json"
    assert connection_row(db, connection_id)["last_seen_at"] > old + timedelta(minutes=8)


@pytest.mark.parametrize("route_key", ["ping", "subscribe", "sendMessage", "$default"])
def test_unknown_connection_gets_unauthorized_event(factory, db, route_key):
    body = {
        "action": route_key if not route_key.startswith("$") else "dance",
        "client_message_id": "m-1",
        "conversation_id": str(uuid.uuid4()),
        "content": "hi",
    }
    event = reply(invoke(route_key, "swept-connection=", body=body))
    assert event["type"] == "error"
    assert event["error"]["code"] == "unauthorized"
    assert event["action"] == body["action"] and event["client_message_id"] == "m-1"
    assert connection_row(db, "swept-connection=") is None


# -- $default ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "code", "action", "client_message_id"),
    [
        ("{not json", "invalid_json", None, None),
        ("", "invalid_json", None, None),
        ("[1, 2]", "bad_request", None, None),
        ('"ping"', "bad_request", None, None),
        ('{"action": "dance", "client_message_id": "cm-7"}', "bad_request", "dance", "cm-7"),
        ('{"client_message_id": "cm-8"}', "bad_request", None, "cm-8"),
        ('{"action": 5, "client_message_id": ["x"]}', "bad_request", None, None),
        ('{"action": "' + "a" * 500 + '"}', "bad_request", None, None),
    ],
    ids=["bad-json", "empty", "array", "string", "unknown-action", "no-action", "non-string-echo", "huge-action"],
)
def test_default_route_answers_error_events(api_client, factory, db, raw, code, action, client_message_id):
    connection_id = connect(api_client, factory, factory.user(factory.client()))
    event = reply(invoke("$default", connection_id, raw_body=raw))
    assert event == {
        "type": "error",
        "action": action,
        "client_message_id": client_message_id,
        "error": {"code": code, "message": event["error"]["message"]},
    }
    assert event["error"]["message"]


def test_default_route_reads_base64_frames(api_client, factory, db):
    import base64

    connection_id = connect(api_client, factory, factory.user(factory.client()))
    raw = ws_event("$default", connection_id)
    raw.update(body=base64.b64encode(b'{"action": "hop", "client_message_id": "b-1"}').decode(), isBase64Encoded=True)
    event = reply(load_handler("WsDefaultFunction")(raw, LambdaContext()))
    assert (event["action"], event["client_message_id"], event["error"]["code"]) == ("hop", "b-1", "bad_request")
    raw.update(body="!!!not base64", isBase64Encoded=True)
    assert reply(load_handler("WsDefaultFunction")(raw, LambdaContext()))["error"]["code"] == "invalid_json"


# -- subscribe -----------------------------------------------------------------------------------
def test_admin_subscribes_to_a_conversation_of_its_client(api_client, factory, db):
    client = factory.client()
    admin, owner = factory.user(client, "admin"), factory.user(client)
    conversation_id = make_conversation(owner)
    connection_id = connect(api_client, factory, admin)
    body = {"action": "subscribe", "conversation_id": str(conversation_id)}
    assert reply(invoke("subscribe", connection_id, body=body)) == {"type": "subscribed", "conversation_id": str(conversation_id)}
    # Idempotent.
    assert reply(invoke("subscribe", connection_id, body=body))["type"] == "subscribed"
    with db.connect() as conn:
        rows = conn.execute(text("SELECT connection_id, conversation_id FROM subscriptions")).all()
    assert rows == [(connection_id, conversation_id)]


def test_subscribe_is_for_admins_of_the_conversations_client_only(api_client, factory, db):
    client, other_client = factory.client(), factory.client()
    owner, stranger = factory.user(client), factory.user(client)
    foreign_admin = factory.user(other_client, "admin")
    conversation_id = make_conversation(owner)
    body = {"action": "subscribe", "conversation_id": str(conversation_id)}

    cases = [(owner, "forbidden"), (stranger, "not_found"), (foreign_admin, "not_found")]
    for user, code in cases:
        event = reply(invoke("subscribe", connect(api_client, factory, user), body=body))
        assert event["type"] == "error" and event["action"] == "subscribe", event
        assert event["error"]["code"] == code, (user.role, event)
    missing = reply(
        invoke(
            "subscribe",
            connect(api_client, factory, factory.user(client, "admin")),
            body={"action": "subscribe", "conversation_id": str(uuid.uuid4())},
        )
    )
    assert missing["error"]["code"] == "not_found"
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM subscriptions")).scalar() == 0


@pytest.mark.parametrize("conversation_id", [None, "nope", 42])
def test_subscribe_validates_conversation_id(api_client, factory, db, conversation_id):
    connection_id = connect(api_client, factory, factory.user(factory.client(), "admin"))
    body: dict[str, Any] = {"action": "subscribe"}
    if conversation_id is not None:
        body["conversation_id"] = conversation_id
    event = reply(invoke("subscribe", connection_id, body=body))
    assert event["error"]["code"] == "validation_error"
    assert event["error"]["details"][0]["field"] == "conversation_id"


# -- sendMessage ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"content": "hi"}, "conversation_id"),
        ({"conversation_id": "not-a-uuid", "content": "hi"}, "conversation_id"),
        ({"content": ""}, "content"),
        ({"content": "   "}, "content"),
        ({"content": "x" * 16001}, "content"),
        ({"content": 5}, "content"),
        ({}, "content"),
        ({"content": "hi", "client_message_id": ""}, "client_message_id"),
        ({"content": "hi", "client_message_id": 7}, "client_message_id"),
        ({"content": "hi", "colour": "red"}, "colour"),
    ],
    ids=[
        "no-conversation",
        "bad-uuid",
        "empty",
        "blank",
        "too-long",
        "not-a-string",
        "no-content",
        "empty-cmid",
        "int-cmid",
        "unknown-field",
    ],
)
def test_send_message_validation_errors(api_client, factory, db, fields, field):
    owner = factory.user(factory.client())
    conversation_id = make_conversation(owner)
    connection_id = connect(api_client, factory, owner)
    body = {"action": "sendMessage", "conversation_id": str(conversation_id), "client_message_id": "cm-1", **fields}
    if "conversation_id" not in fields and field == "conversation_id":
        body.pop("conversation_id")
    event = reply(invoke("sendMessage", connection_id, body=body))
    assert event["type"] == "error" and event["action"] == "sendMessage"
    assert event["error"]["code"] == "validation_error", event
    assert field in {d["field"] for d in event["error"]["details"]}
    assert event["client_message_id"] == (body["client_message_id"] if isinstance(body["client_message_id"], str) else None)
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM messages")).scalar() == 0


needs_chat = pytest.mark.skipif(
    importlib.util.find_spec("bitworks.services.chat") is None,
    reason="bitworks.services.chat (send_user_message) is not written yet",
)


@needs_chat
def test_send_message_access_errors_come_back_as_events(api_client, factory, db):
    client = factory.client()
    owner, other, admin = factory.user(client), factory.user(client), factory.user(client, "admin")
    conversation_id = make_conversation(owner)
    body = {"action": "sendMessage", "conversation_id": str(conversation_id), "content": "x" * 16000, "client_message_id": "k-1"}
    # 16,000 characters pass validation; the access rules answer.
    cases = [(other, "not_found"), (admin, "forbidden")]
    for user, code in cases:
        event = reply(invoke("sendMessage", connect(api_client, factory, user), body=body))
        assert (event["type"], event["action"], event["client_message_id"]) == ("error", "sendMessage", "k-1")
        assert event["error"]["code"] == code, event
    elsewhere = {**body, "conversation_id": str(uuid.uuid4())}
    missing = reply(invoke("sendMessage", connect(api_client, factory, owner), body=elsewhere))
    assert missing["error"]["code"] == "not_found"
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM messages")).scalar() == 0


@needs_chat
def test_send_message_stores_acks_by_push_and_starts_the_turn(api_client, factory, db):
    from tests.support.fake_aws import FakeAws

    owner = factory.user(factory.client())
    conversation_id = make_conversation(owner)
    first, second = connect(api_client, factory, owner), connect(api_client, factory, owner)
    body = {"action": "sendMessage", "conversation_id": str(conversation_id), "content": "Hello there", "client_message_id": "c-1"}

    fake = FakeAws().start().use()
    try:
        assert reply(invoke("sendMessage", first, body=body)) is None  # the ack is the push
        assert fake.invoked_functions == ["DispatchFunction"]
        # A repeat pushes nothing: the sender gets its ack back.
        again = reply(invoke("sendMessage", second, body=body))
        clash = reply(invoke("sendMessage", second, body={**body, "content": "Something else"}))
    finally:
        fake.stop()
    assert fake.invoked_functions == ["DispatchFunction"] and len(fake.pushes) == 2
    pushed = fake.pushes
    assert sorted(c for c, _ in pushed) == sorted([first, second])
    events = [e for _, e in pushed]
    assert events[0] == events[1] and events[0]["type"] == "message.created"
    message = events[0]["message"]
    shown = (message["content"], message["role"], message["status"], message["client_message_id"])
    assert shown == ("Hello there", "user", "pending", "c-1")
    assert again == {"type": "message.created", "message": message}
    assert clash["error"]["code"] == "conflict" and clash["client_message_id"] == "c-1"
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM messages")).scalar() == 1


@pytest.mark.parametrize("logical_id", sorted(set(FUNCTIONS.values())))
def test_sample_events_run_through_their_handlers(db, logical_id):
    from tests.support.template import ROOT

    event = json.loads((ROOT / "events" / f"{logical_id}.json").read_text())
    response = load_handler(logical_id)(event, LambdaContext(logical_id))
    if logical_id == "WsConnectFunction":
        assert response == {"statusCode": 401}  # the sample's ticket is a placeholder
    elif logical_id == "WsDisconnectFunction":
        assert response == {"statusCode": 200}
    else:
        assert reply(response)["error"]["code"] == "unauthorized"  # no such connection in the database
