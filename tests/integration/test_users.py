import json
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text


def snapshot(engine, tables=("users", "connections")):
    with engine.connect() as conn:
        return {t: sorted(conn.execute(text(f"SELECT row_to_json(x)::text FROM {t} x")).scalars()) for t in tables}


def walk(api_client, path, token, limit=3, query=None):
    got, cursor, pages = [], None, 0
    while True:
        q = {**(query or {}), "limit": str(limit), **({"cursor": cursor} if cursor else {})}
        status, body, _ = api_client.call("GET", path, token=token, query=q)
        assert status == 200, body
        assert len(body["items"]) <= limit
        got += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return got, pages


def test_admin_creates_and_lists(api_client, factory, db):
    client, other = factory.client(), factory.client()
    admin = factory.user(client, "admin")
    factory.user(other)
    token = factory.token(admin)
    status, body, _ = api_client.call(
        "POST", "/users", token=token, body={"email": " Bob@Example.com", "password": "bob-password-1", "display_name": "Bob"}
    )
    assert status == 201, body
    user = body["user"]
    assert user["email"] == "bob@example.com" and user["role"] == "user" and user["client_id"] == str(client.id)
    assert "password" not in json.dumps(body) and "bob-password-1" not in json.dumps(body)
    status, body, _ = api_client.call(
        "POST", "/auth/login", body={"email": "bob@example.com", "password": "bob-password-1", "client_id": str(client.id)}
    )
    assert status == 200

    before = snapshot(db)
    status, body, _ = api_client.call("POST", "/users", token=token, body={"email": "BOB@example.com", "password": "other-password"})
    assert status == 409 and body["error"]["code"] == "conflict"
    for bad in (
        {"email": "c@example.com", "password": "long-enough", "role": "superadmin"},
        {"email": "c@example.com", "password": "short"},
        {"email": "c@example.com", "password": "long-enough", "extra": 1},
        {"email": "c@example.com", "password": 12345678},
        {"email": "c@example.com"},
        {"email": "not-an-email", "password": "long-enough"},
    ):
        status, body, _ = api_client.call("POST", "/users", token=token, body=bad)
        assert status == 422 and body["error"]["code"] == "validation_error", bad
    assert api_client.call("POST", "/users", token=token, raw_body="{bad json")[0] == 400
    # an admin cannot act inside another client
    status, _, _ = api_client.call(
        "POST", "/users", token=token, body={"email": "c@example.com", "password": "long-enough", "client_id": str(other.id)}
    )
    assert status == 404
    assert snapshot(db) == before

    items, _ = walk(api_client, "/users", token)
    assert {u["client_id"] for u in items} == {str(client.id)} and len(items) == 2
    # ?client_id= of another client is refused for a non-superadmin
    assert api_client.call("GET", "/users", token=token, query={"client_id": str(other.id)})[0] == 404


def test_superadmin_names_the_client(api_client, factory):
    client = factory.client()
    su = factory.token(factory.user(None, "superadmin"))
    body = {"email": "first-admin@example.com", "password": "first-admin-pw", "role": "admin"}
    status, answer, _ = api_client.call("POST", "/users", token=su, body=body)
    assert status == 422 and answer["error"]["details"][0]["field"] == "client_id"
    assert api_client.call("POST", "/users", token=su, body={**body, "client_id": str(uuid.uuid4())})[0] == 404
    status, answer, _ = api_client.call("POST", "/users", token=su, body={**body, "client_id": str(client.id)})
    assert status == 201 and answer["user"]["role"] == "admin"
    assert api_client.call("GET", "/users", token=su)[0] == 422
    status, answer, _ = api_client.call("GET", "/users", token=su, query={"client_id": str(client.id)})
    assert status == 200 and [u["email"] for u in answer["items"]] == ["first-admin@example.com"]


def test_roles_and_tenancy(api_client, factory, db):
    client, other = factory.client(), factory.client()
    admin, user, peer = factory.user(client, "admin"), factory.user(client), factory.user(client)
    stranger_admin = factory.user(other, "admin")
    t_admin, t_user, t_stranger = factory.token(admin), factory.token(user), factory.token(stranger_admin)
    before = snapshot(db)

    assert api_client.call("GET", f"/users/{user.id}", token=t_admin)[1]["user"]["id"] == str(user.id)
    assert api_client.call("GET", f"/users/{user.id}", token=t_user)[0] == 200
    for token, target in (
        (t_user, peer),
        (t_user, admin),
        (t_stranger, user),
        (t_admin, stranger_admin),
        (t_admin, uuid.uuid4()),
    ):
        tid = getattr(target, "id", target)
        for method, body in (("GET", None), ("PUT", {"display_name": "x"}), ("DELETE", None)):
            status, answer, _ = api_client.call(method, f"/users/{tid}", token=token, body=body)
            assert status == 404 and answer["error"]["code"] == "not_found", (method, tid)
        assert api_client.call("GET", f"/users/{tid}/conversations", token=token)[0] == 404
    # a user sees itself but may not manage users
    for method, path, body in (
        ("POST", "/users", {"email": "z@example.com", "password": "long-enough"}),
        ("GET", "/users", None),
        ("DELETE", f"/users/{user.id}", None),
        ("PUT", f"/users/{user.id}", {"role": "admin"}),
    ):
        status, answer, _ = api_client.call(method, path, token=t_user, body=body)
        assert status == 403 and answer["error"]["code"] == "forbidden", (method, path)
    for method, path in (
        ("GET", "/users"),
        ("POST", "/users"),
        ("GET", f"/users/{user.id}"),
        ("PUT", f"/users/{user.id}"),
        ("DELETE", f"/users/{user.id}"),
        ("GET", f"/users/{user.id}/conversations"),
    ):
        assert api_client.call(method, path, body={} if method in ("POST", "PUT") else None)[0] == 401
    for method in ("GET", "PUT", "DELETE"):
        status, answer, _ = api_client.call(method, "/users/12345", token=t_admin, body={} if method == "PUT" else None)
        assert status == 422 and answer["error"]["details"][0]["field"] == "user_id"
    assert api_client.call("GET", "/users/nope/conversations", token=t_admin)[0] == 422
    assert snapshot(db) == before


def test_update_rules_and_revocation(api_client, factory, db):
    client = factory.client()
    admin, user, peer = factory.user(client, "admin"), factory.user(client), factory.user(client, email="peer@example.com")
    t_admin, t_user = factory.token(admin), factory.token(user)

    # display_name alone keeps tokens
    status, body, _ = api_client.call("PUT", f"/users/{user.id}", token=t_user, body={"display_name": "Me"})
    assert status == 200 and body["user"]["display_name"] == "Me"
    assert api_client.call("GET", "/auth/verify", token=t_user)[0] == 200

    before = snapshot(db)
    assert api_client.call("PUT", f"/users/{user.id}", token=t_user, body={"role": "admin", "display_name": "Boss"})[0] == 403
    taken = {"email": "PEER@example.com", "current_password": user.password}
    assert api_client.call("PUT", f"/users/{user.id}", token=t_user, body=taken)[0] == 409
    # its own email only with its password: a stolen token alone must not move the account away
    for extra, message in (({}, "required to change your own email"), ({"current_password": "wrong guess"}, "incorrect")):
        status, answer, _ = api_client.call("PUT", f"/users/{user.id}", token=t_user, body={"email": "thief@example.com", **extra})
        assert status == 422 and answer["error"]["details"] == [{"field": "current_password", "message": message}], answer
    # its own password only through PUT /auth/password (which asks for the current one)
    assert api_client.call("PUT", f"/users/{user.id}", token=t_user, body={"password": "taken-over-1"})[0] == 403
    for bad in ({"role": "superadmin"}, {"password": "short"}, {"email": 3}, {"nickname": "x"}, {"display_name": ["x"]}):
        status, _answer, _ = api_client.call("PUT", f"/users/{user.id}", token=t_admin, body=bad)
        assert status == 422, bad
    assert api_client.call("PUT", f"/users/{user.id}", token=t_admin, raw_body="nope")[0] == 400
    assert snapshot(db) == before

    # a user changing its own email: saved, and its tokens are revoked
    body = {"email": "New@Example.com", "current_password": user.password}
    status, body, _ = api_client.call("PUT", f"/users/{user.id}", token=t_user, body=body)
    assert status == 200 and body["user"]["email"] == "new@example.com"
    assert api_client.call("GET", "/auth/verify", token=t_user)[0] == 401

    # admin promotes peer: peer's token dies, the new role shows
    t_peer = factory.token(peer)
    status, body, _ = api_client.call("PUT", f"/users/{peer.id}", token=t_admin, body={"role": "admin"})
    assert status == 200 and body["user"]["role"] == "admin"
    assert api_client.call("GET", "/auth/verify", token=t_peer)[0] == 401

    # admin sets a password: the old one stops working, the new one logs in
    status, _, _ = api_client.call("PUT", f"/users/{peer.id}", token=t_admin, body={"password": "brand-new-pass"})
    assert status == 200
    login = {"email": "peer@example.com", "client_id": str(client.id)}
    assert api_client.call("POST", "/auth/login", body={**login, "password": peer.password})[0] == 401
    assert api_client.call("POST", "/auth/login", body={**login, "password": "brand-new-pass"})[0] == 200
    with db.connect() as conn:
        versions = dict(conn.execute(text("SELECT email, token_version FROM users")).all())
    assert versions["peer@example.com"] == 2 and versions["new@example.com"] == 1 and versions[admin.email] == 0


def test_delete(api_client, factory, db):
    from bitworks.db import session_scope
    from bitworks.models import Connection
    from tests.support.fake_aws import FakeAws

    client = factory.client()
    admin, user, other = factory.user(client, "admin"), factory.user(client), factory.user(client)
    t_admin, t_user = factory.token(admin), factory.token(user)
    with session_scope() as s:
        s.add_all(
            [
                Connection(connection_id="victim-conn=", user_id=user.id, client_id=client.id),
                Connection(connection_id="other-conn=", user_id=other.id, client_id=client.id),
            ]
        )
    before = snapshot(db)
    status, body, _ = api_client.call("DELETE", f"/users/{admin.id}", token=t_admin)
    assert status == 409 and body["error"]["code"] == "conflict"
    assert snapshot(db) == before

    fake = FakeAws().start().use()
    try:
        assert api_client.call("DELETE", f"/users/{user.id}", token=t_admin)[0] == 204
    finally:
        fake.stop()
    assert fake.deleted == ["victim-conn="]
    assert api_client.call("GET", "/auth/verify", token=t_user)[0] == 401
    assert api_client.call("GET", f"/users/{user.id}", token=t_admin)[0] == 404
    with db.connect() as conn:
        assert conn.execute(text("SELECT connection_id FROM connections")).scalars().all() == ["other-conn="]


def test_user_conversations(api_client, factory, db):
    from bitworks.db import session_scope
    from bitworks.models import Conversation

    client = factory.client()
    admin, user, peer = factory.user(client, "admin"), factory.user(client), factory.user(client)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    with session_scope() as s:
        rows = [
            Conversation(client_id=client.id, user_id=user.id, title=f"c{i}", updated_at=base + timedelta(minutes=i % 4)) for i in range(8)
        ]
        rows.append(Conversation(client_id=client.id, user_id=peer.id, title="peer's"))
        s.add_all(rows)
    own = {str(r.id) for r in rows[:8]}
    for token in (factory.token(admin), factory.token(user)):
        items, pages = walk(api_client, f"/users/{user.id}/conversations", token, limit=3)
        ids = [c["id"] for c in items]
        assert pages == 3 and len(ids) == len(set(ids)) == 8 and set(ids) == own
        keys = [(datetime.fromisoformat(c["updated_at"].replace("Z", "+00:00")), uuid.UUID(c["id"])) for c in items]
        assert keys == sorted(keys, reverse=True)
        assert set(items[0]) >= {"id", "client_id", "user_id", "title", "status", "template_id", "created_at", "updated_at"}
    t_user = factory.token(user)
    for query in ({"limit": "0"}, {"limit": "10000"}, {"cursor": "not-a-cursor"}):
        assert api_client.call("GET", f"/users/{user.id}/conversations", token=t_user, query=query)[0] == 422
    assert api_client.call("GET", f"/users/{peer.id}/conversations", token=t_user)[0] == 404


def test_list_pagination(api_client, factory):
    client = factory.client()
    admin = factory.user(client, "admin")
    for _ in range(6):
        factory.user(client)
    token = factory.token(admin)
    items, pages = walk(api_client, "/users", token, limit=2)
    ids = [u["id"] for u in items]
    assert pages == 4 and len(ids) == len(set(ids)) == 7
    assert all("password_hash" not in u and "token_version" not in u for u in items)
    for query in ({"limit": "0"}, {"limit": "10000"}, {"cursor": "AAAA"}):
        status, body, _ = api_client.call("GET", "/users", token=token, query=query)
        assert status == 422 and body["error"]["code"] == "validation_error"
