import json
import os
import uuid

import jwt
import pytest
from sqlalchemy import func, select, text


def expired_token(factory, user):
    claims = jwt.decode(factory.token(user), options={"verify_signature": False})
    return jwt.encode({**claims, "iat": 900, "exp": 1000}, os.environ["JWT_SECRET"], algorithm="HS256")


def add_template(client, name="Support"):
    from bitworks.db import session_scope
    from bitworks.models import Template

    with session_scope() as s:
        row = Template(client_id=client.id, name=name, content="You help {{customer}}.")
        s.add(row)
        s.flush()
        return row.id


def add_messages(conversation_id, count):
    """Block seq allocation (same rule as one message at a time: bump last_seq, use the numbers)."""
    from bitworks.db import session_scope

    with session_scope() as s:
        last = s.execute(
            text("UPDATE conversations SET last_seq = last_seq + :n, updated_at = now() WHERE id = :id RETURNING last_seq"),
            {"n": count, "id": conversation_id},
        ).scalar_one()
        s.execute(
            text(
                "INSERT INTO messages (conversation_id, seq, role, content, status) "
                "SELECT :id, g, 'user', 'message ' || g, 'replied' FROM generate_series(CAST(:first AS bigint), :last) g"
            ),
            {"id": conversation_id, "first": last - count + 1, "last": last},
        )


def count(model, **where):
    from bitworks.db import session_scope

    with session_scope() as s:
        stmt = select(func.count()).select_from(model)
        for key, value in where.items():
            stmt = stmt.where(getattr(model, key) == value)
        return s.execute(stmt).scalar_one()


@pytest.fixture
def world(factory):
    a = factory.client()
    b = factory.client()
    w = {
        "a": a,
        "b": b,
        "owner": factory.user(a),
        "peer": factory.user(a),
        "admin": factory.user(a, "admin"),
        "other_admin": factory.user(b, "admin"),
        "super": factory.user(None, "superadmin"),
    }
    w["tok"] = {k: factory.token(v) for k, v in w.items() if k not in ("a", "b")}
    return w


def create(api_client, token, body=None):
    status, data, _ = api_client.call("POST", "/conversations", token=token, body=body if body is not None else {})
    assert status == 201, data
    return data["conversation"]


def test_create_minimal_and_full(api_client, factory, world):
    conv = create(api_client, world["tok"]["owner"])
    assert conv["user_id"] == str(world["owner"].id) and conv["client_id"] == str(world["a"].id)
    assert (conv["status"], conv["mode"], conv["title"], conv["template_id"]) == ("open", "bot", None, None)
    assert conv["created_at"].endswith("Z") and conv["active_message_id"] is None

    template_id = add_template(world["a"])
    body = {
        "title": "Order 1234",
        "template_id": str(template_id),
        "context": {"context_window": 25, "parameters": {"plan": "pro"}},
    }
    conv = create(api_client, world["tok"]["owner"], body)
    assert conv["title"] == "Order 1234" and conv["template_id"] == str(template_id)
    status, data, _ = api_client.call("GET", f"/conversations/{conv['id']}/context", token=world["tok"]["owner"])
    assert status == 200
    assert data["context"]["context_window"] == 25 and data["context"]["parameters"] == {"plan": "pro"}
    assert data["context"]["created_at"] is not None


def test_create_rejects_bad_input(api_client, factory, world):
    foreign_template = add_template(world["b"])
    tok = world["tok"]["owner"]
    cases = [
        {"template_id": str(foreign_template)},
        {"template_id": str(uuid.uuid4())},
        {"template_id": "not-a-uuid"},
        {"title": "a\u0000b"},
        {"title": "x" * 501},
        {"title": 5},
        {"owner": str(world["peer"].id)},
        {"context": {"context_window": 0}},
        {"context": {"context_window": 201}},
        {"context": {"parameters": []}},
        {"context": {"parameters": {"k": "\u0000"}}},
    ]
    for body in cases:
        status, data, _ = api_client.call("POST", "/conversations", token=tok, body=body)
        assert (status, data["error"]["code"]) == (422, "validation_error"), body
    status, data, _ = api_client.call("POST", "/conversations", token=tok, raw_body="{nope")
    assert (status, data["error"]["code"]) == (400, "invalid_json")
    # another client's template is indistinguishable from a missing one
    a = api_client.call("POST", "/conversations", token=tok, body={"template_id": str(foreign_template)})[1]
    b = api_client.call("POST", "/conversations", token=tok, body={"template_id": str(uuid.uuid4())})[1]
    assert a == b
    status, data, _ = api_client.call("POST", "/conversations", token=world["tok"]["super"], body={})
    assert status == 403 and data["error"]["code"] == "forbidden"
    for token in (None, expired_token(factory, world["owner"])):
        assert api_client.call("POST", "/conversations", token=token, body={})[0] == 401
    from bitworks.models import Conversation

    assert count(Conversation) == 0


def test_list_scopes(api_client, factory, world):
    tok = world["tok"]
    mine = {create(api_client, tok["owner"])["id"] for _ in range(2)}
    theirs = {create(api_client, tok["peer"])["id"]}
    other_client = create(api_client, factory.token(factory.user(world["b"])))["id"]

    def ids(token, query=None):
        status, data, _ = api_client.call("GET", "/conversations", token=token, query=query)
        assert status == 200, data
        return {c["id"] for c in data["items"]}

    assert ids(tok["owner"]) == mine
    assert ids(tok["peer"]) == theirs
    assert ids(tok["owner"], {"user_id": str(world["owner"].id)}) == mine
    assert ids(tok["admin"]) == mine | theirs
    assert ids(tok["admin"], {"user_id": str(world["peer"].id)}) == theirs
    assert ids(tok["other_admin"]) == {other_client}
    assert ids(tok["super"], {"client_id": str(world["a"].id)}) == mine | theirs
    assert ids(tok["super"], {"user_id": str(world["owner"].id)}) == mine

    for token, query, code in [
        (tok["owner"], {"user_id": str(world["peer"].id)}, 404),  # a user cannot list another's
        (tok["other_admin"], {"user_id": str(world["owner"].id)}, 404),  # nor an admin another client's
        (tok["admin"], {"client_id": str(world["b"].id)}, 404),
        (tok["super"], None, 422),  # superadmins must name a client
        (tok["admin"], {"user_id": "nope"}, 422),
        (None, None, 401),
        (expired_token(factory, world["admin"]), None, 401),
    ]:
        status, data, _ = api_client.call("GET", "/conversations", token=token, query=query)
        assert status == code, (query, data)


def test_list_pagination_walk(api_client, world):
    tok = world["tok"]["owner"]
    created = [create(api_client, tok)["id"] for _ in range(7)]
    # activity reorders: touching the oldest moves it to the front
    status, _, _ = api_client.call("PUT", f"/conversations/{created[0]}", token=tok, body={"title": "bumped"})
    assert status == 200
    expected = [created[0], *created[1:][::-1]]

    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": "3"} | ({"cursor": cursor} if cursor else {})
        status, data, _ = api_client.call("GET", "/conversations", token=tok, query=query)
        assert status == 200 and len(data["items"]) <= 3
        seen += [c["id"] for c in data["items"]]
        pages += 1
        cursor = data["next_cursor"]
        if cursor is None:
            break
    assert seen == expected and pages == 3

    for bad in ("0", "201", "10000", "-1", "abc"):
        status, data, _ = api_client.call("GET", "/conversations", token=tok, query={"limit": bad})
        assert (status, data["error"]["code"]) == (422, "validation_error"), bad
    for forged in ("garbage", "eyJhIjoxfQ", "W10", "x" * 300, '["2024-01-01T00:00:00", "nope"]'):
        status, data, _ = api_client.call("GET", "/conversations", token=tok, query={"cursor": forged})
        assert (status, data["error"]["code"]) == (422, "validation_error"), forged


def test_list_pagination_with_equal_timestamps(api_client, world):
    """Ties on updated_at are broken by id: no row is skipped or repeated across pages."""
    from bitworks.db import session_scope

    with session_scope() as s:
        rows = (
            s.execute(
                text(
                    "INSERT INTO conversations (client_id, user_id, updated_at) "
                    "SELECT :c, :u, timestamptz '2026-01-01 12:00:00+00' FROM generate_series(1, 9) RETURNING id"
                ),
                {"c": world["a"].id, "u": world["owner"].id},
            )
            .scalars()
            .all()
        )
    expected = sorted((str(r) for r in rows), key=lambda i: uuid.UUID(i).bytes, reverse=True)
    seen, cursor = [], None
    while True:
        query = {"limit": "4"} | ({"cursor": cursor} if cursor else {})
        status, data, _ = api_client.call("GET", "/conversations", token=world["tok"]["admin"], query=query)
        assert status == 200
        seen += [c["id"] for c in data["items"]]
        cursor = data["next_cursor"]
        if cursor is None:
            break
    assert seen == expected


def test_get_update_delete(api_client, world):
    tok = world["tok"]
    conv = create(api_client, tok["owner"], {"title": "Hello"})
    path = f"/conversations/{conv['id']}"
    for who in ("owner", "admin"):
        status, data, _ = api_client.call("GET", path, token=tok[who])
        assert status == 200 and data["conversation"] == conv

    template_id = add_template(world["a"])
    body = {"title": "Renamed", "status": "closed", "mode": "human", "template_id": str(template_id)}
    status, data, _ = api_client.call("PUT", path, token=tok["admin"], body=body)
    assert status == 200, data
    updated = data["conversation"]
    assert {k: updated[k] for k in body} == body
    assert updated["updated_at"] > conv["updated_at"] and updated["created_at"] == conv["created_at"]
    # null clears title and template; omitted fields stay
    status, data, _ = api_client.call("PUT", path, token=tok["owner"], body={"title": None, "template_id": None})
    assert status == 200
    assert (data["conversation"]["title"], data["conversation"]["template_id"], data["conversation"]["status"]) == (
        None,
        None,
        "closed",
    )

    foreign_template = add_template(world["b"])
    for bad in (
        {"status": "archived"},
        {"status": None},
        {"mode": None},
        {"mode": "robot"},
        {"template_id": str(foreign_template)},
        {"user_id": str(world["peer"].id)},
        {"title": "a\u0000"},
    ):
        status, data, _ = api_client.call("PUT", path, token=tok["owner"], body=bad)
        assert (status, data["error"]["code"]) == (422, "validation_error"), bad
    assert api_client.call("GET", path, token=tok["owner"])[1]["conversation"]["mode"] == "human"

    from bitworks.models import Context, Conversation, Message

    add_messages(uuid.UUID(conv["id"]), 5)
    assert api_client.call("PUT", f"{path}/context", token=tok["owner"], body={"context_window": 3})[0] == 200
    status, data, _ = api_client.call("DELETE", path, token=tok["admin"])
    assert status == 204 and data is None
    assert count(Message, conversation_id=uuid.UUID(conv["id"])) == 0
    assert count(Context, conversation_id=uuid.UUID(conv["id"])) == 0
    assert count(Conversation) == 0
    assert api_client.call("GET", path, token=tok["owner"])[0] == 404
    assert api_client.call("DELETE", path, token=tok["owner"])[0] == 404


def test_isolation_matrix(api_client, factory, world):
    tok = world["tok"]
    conv = create(api_client, tok["owner"])
    add_messages(uuid.UUID(conv["id"]), 2)
    from bitworks.db import session_scope
    from bitworks.models import Message

    with session_scope() as s:
        message_id = s.scalars(select(Message.id).where(Message.conversation_id == uuid.UUID(conv["id"]))).first()
    base = f"/conversations/{conv['id']}"
    routes = [
        ("GET", base, None),
        ("PUT", base, {"title": "hijack"}),
        ("DELETE", base, None),
        ("GET", f"{base}/messages", None),
        ("DELETE", f"/messages/{message_id}", None),
        ("POST", f"{base}/context", {"context_window": 5}),
        ("PUT", f"{base}/context", {"context_window": 5}),
        ("GET", f"{base}/context", None),
        ("DELETE", f"{base}/context", None),
    ]
    callers = [(tok["other_admin"], 404), (tok["peer"], 404), (None, 401), (expired_token(factory, world["owner"]), 401)]
    for method, path, body in routes:
        for token, expected in callers:
            status, data, _ = api_client.call(method, path, token=token, body=body)
            assert status == expected, (method, path, expected, data)
            assert data["error"]["code"] == {404: "not_found", 401: "unauthorized"}[expected]
    # nothing changed
    status, data, _ = api_client.call("GET", base, token=tok["owner"])
    assert status == 200 and data["conversation"]["title"] is None
    assert count(Message, conversation_id=uuid.UUID(conv["id"])) == 2
    # unknown and malformed ids
    assert api_client.call("GET", f"/conversations/{uuid.uuid4()}", token=tok["owner"])[0] == 404
    assert api_client.call("GET", "/conversations/not-a-uuid", token=tok["owner"])[0] == 422


# -- conversation.updated push -------------------------------------------------------------------
def add_connection(user, connection_id, subscribe_to=None):
    from bitworks.db import session_scope
    from bitworks.models import Connection, Subscription

    with session_scope() as s:
        s.add(Connection(connection_id=connection_id, user_id=user.id, client_id=user.client_id))
        s.flush()
        if subscribe_to is not None:
            s.add(Subscription(connection_id=connection_id, conversation_id=uuid.UUID(subscribe_to)))


def test_update_pushes_to_owner_and_subscribers(api_client, world):
    from tests.support.fake_aws import FakeAws

    tok = world["tok"]
    conv = create(api_client, tok["owner"])
    add_connection(world["owner"], "own-1")
    add_connection(world["owner"], "own-2")
    add_connection(world["admin"], "adm-1", subscribe_to=conv["id"])
    add_connection(world["peer"], "peer-1")
    fake = FakeAws().start().use()
    try:
        status, data, _ = api_client.call("PUT", f"/conversations/{conv['id']}", token=tok["owner"], body={"title": "New title"})
        assert status == 200
        # an update that changes nothing pushes nothing
        assert api_client.call("PUT", f"/conversations/{conv['id']}", token=tok["owner"], body={"title": "New title"})[0] == 200
        for connection_id in ("own-1", "own-2", "adm-1"):
            assert fake.events(connection_id) == [{"type": "conversation.updated", "conversation": data["conversation"]}]
            assert fake.events(connection_id)[0]["conversation"]["title"] == "New title"
        assert fake.events("peer-1") == []
    finally:
        fake.stop()


def test_update_succeeds_when_push_fails(api_client, world):
    from bitworks.models import Connection
    from tests.support.fake_aws import FakeAws

    tok = world["tok"]
    conv = create(api_client, tok["owner"])
    add_connection(world["owner"], "stale-1")
    fake = FakeAws().start().use()
    fake.gone.add("stale-1")
    try:
        status, data, _ = api_client.call("PUT", f"/conversations/{conv['id']}", token=tok["owner"], body={"status": "closed"})
        assert status == 200 and data["conversation"]["status"] == "closed"
        assert fake.requests == 1
        # the gone connection was removed, the change was kept
        assert count(Connection) == 0
        assert api_client.call("GET", f"/conversations/{conv['id']}", token=tok["owner"])[1]["conversation"]["status"] == "closed"
    finally:
        fake.stop()


@pytest.mark.parametrize(
    "logical_id",
    [
        "CreateConversationFunction",
        "ListConversationsFunction",
        "GetConversationFunction",
        "UpdateConversationFunction",
        "DeleteConversationFunction",
        "ListMessagesFunction",
        "DeleteMessageFunction",
        "CreateContextFunction",
        "ReplaceContextFunction",
        "GetContextFunction",
        "DeleteContextFunction",
    ],
)
def test_sample_events_reach_their_handler(db, logical_id):
    """events/<LogicalId>.json routes to its handler (its example token is not signed with our key: 401)."""
    from tests.support.events import LambdaContext
    from tests.support.template import ROOT, load_handler

    event = json.loads((ROOT / "events" / f"{logical_id}.json").read_text())
    response = load_handler(logical_id)(event, LambdaContext(logical_id))
    assert response["statusCode"] == 401, response
    assert json.loads(response["body"])["error"]["code"] == "unauthorized"
