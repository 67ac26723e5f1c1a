import json
import uuid
from datetime import datetime

from sqlalchemy import text


def ts(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def snapshot(engine):
    with engine.connect() as conn:
        return sorted(conn.execute(text("SELECT row_to_json(x)::text FROM templates x")).scalars())


GREETING = {"name": "greeting", "content": "Hello {{ name }}, welcome to {{shop}}. {{name}} again.", "description": "first touch"}


def test_crud_and_variables(api_client, factory, db):
    client = factory.client()
    admin, user = factory.user(client, "admin"), factory.user(client)
    t_admin, t_user = factory.token(admin), factory.token(user)
    status, body, _ = api_client.call("POST", "/templates", token=t_admin, body=GREETING)
    assert status == 201, body
    tpl = body["template"]
    assert tpl["variables"] == ["name", "shop"] and tpl["client_id"] == str(client.id)
    tid = tpl["id"]

    status, body, _ = api_client.call("GET", f"/templates/{tid}", token=t_user)
    assert status == 200 and body["template"]["content"] == GREETING["content"]
    status, body, _ = api_client.call("GET", "/templates", token=t_user)
    assert status == 200 and [t["id"] for t in body["items"]] == [tid] and body["next_cursor"] is None

    status, body, _ = api_client.call("PUT", f"/templates/{tid}", token=t_admin, body={"content": "Bye {{who}}", "description": None})
    assert status == 200
    assert body["template"]["variables"] == ["who"] and body["template"]["description"] is None
    assert body["template"]["name"] == "greeting" and ts(body["template"]["updated_at"]) > ts(tpl["updated_at"])

    assert api_client.call("DELETE", f"/templates/{tid}", token=t_admin)[0] == 204
    assert api_client.call("GET", f"/templates/{tid}", token=t_admin)[0] == 404
    assert snapshot(db) == []


def test_delete_keeps_conversations(api_client, factory, db):
    from bitworks.db import session_scope
    from bitworks.models import Conversation

    client = factory.client()
    admin = factory.user(client, "admin")
    token = factory.token(admin)
    tid = api_client.call("POST", "/templates", token=token, body=GREETING)[1]["template"]["id"]
    with session_scope() as s:
        s.add(Conversation(client_id=client.id, user_id=admin.id, template_id=uuid.UUID(tid)))
    assert api_client.call("DELETE", f"/templates/{tid}", token=token)[0] == 204
    with db.connect() as conn:
        assert conn.execute(text("SELECT template_id FROM conversations")).scalars().all() == [None]


def test_name_unique_per_client(api_client, factory, db):
    client, other = factory.client(), factory.client()
    t_admin, t_other = factory.token(factory.user(client, "admin")), factory.token(factory.user(other, "admin"))
    assert api_client.call("POST", "/templates", token=t_admin, body=GREETING)[0] == 201
    assert api_client.call("POST", "/templates", token=t_other, body=GREETING)[0] == 201  # another client may reuse it
    second = api_client.call("POST", "/templates", token=t_admin, body={**GREETING, "name": "second"})[1]["template"]
    before = snapshot(db)
    status, body, _ = api_client.call("POST", "/templates", token=t_admin, body=GREETING)
    assert status == 409 and body["error"]["code"] == "conflict"
    assert api_client.call("PUT", f"/templates/{second['id']}", token=t_admin, body={"name": "greeting", "content": "x"})[0] == 409
    assert snapshot(db) == before
    assert api_client.call("PUT", f"/templates/{second['id']}", token=t_admin, body={"name": "second"})[0] == 200


def test_roles_and_tenancy(api_client, factory, db):
    client, other = factory.client(), factory.client()
    admin, user = factory.user(client, "admin"), factory.user(client)
    stranger = factory.user(other, "admin")
    t_admin, t_user, t_stranger = factory.token(admin), factory.token(user), factory.token(stranger)
    tid = api_client.call("POST", "/templates", token=t_admin, body=GREETING)[1]["template"]["id"]
    before = snapshot(db)

    for method, path, body in (
        ("POST", "/templates", {**GREETING, "name": "mine"}),
        ("PUT", f"/templates/{tid}", {"name": "x"}),
        ("DELETE", f"/templates/{tid}", None),
    ):
        status, answer, _ = api_client.call(method, path, token=t_user, body=body)
        assert status == 403 and answer["error"]["code"] == "forbidden", (method, path)
        assert api_client.call(method, path, body=body)[0] == 401
    for method, body in (("GET", None), ("PUT", {"name": "x"}), ("DELETE", None)):
        for target in (tid, str(uuid.uuid4())):
            status, answer, _ = api_client.call(method, f"/templates/{target}", token=t_stranger, body=body)
            assert status == 404 and answer["error"]["code"] == "not_found"
        status, answer, _ = api_client.call(method, "/templates/abc", token=t_admin, body=body)
        assert status == 422 and answer["error"]["details"][0]["field"] == "template_id"
    assert api_client.call("GET", "/templates", token=t_stranger)[1]["items"] == []
    assert api_client.call("GET", "/templates", token=t_user, query={"client_id": str(other.id)})[0] == 404
    assert api_client.call("POST", "/templates", token=t_admin, body={**GREETING, "client_id": str(other.id)})[0] == 404
    assert api_client.call("GET", "/templates")[0] == 401
    assert snapshot(db) == before


def test_superadmin(api_client, factory):
    client = factory.client()
    su = factory.token(factory.user(None, "superadmin"))
    assert api_client.call("POST", "/templates", token=su, body=GREETING)[0] == 422
    status, body, _ = api_client.call("POST", "/templates", token=su, body={**GREETING, "client_id": str(client.id)})
    assert status == 201 and body["template"]["client_id"] == str(client.id)
    status, body, _ = api_client.call("GET", "/templates", token=su, query={"client_id": str(client.id)})
    assert status == 200 and len(body["items"]) == 1


def test_bad_bodies(api_client, factory, db):
    client = factory.client()
    token = factory.token(factory.user(client, "admin"))
    tid = api_client.call("POST", "/templates", token=token, body=GREETING)[1]["template"]["id"]
    before = snapshot(db)
    for bad in (
        {"name": "x"},
        {"name": "x", "content": 3},
        {"name": "", "content": "x"},
        {"name": "x", "content": "y", "vars": []},
        {"name": "x", "content": "y" * 16001},
        {"name": "x", "content": "y", "client_id": "nope"},
        {"name": "a\u0000b", "content": "y"},  # Postgres TEXT cannot hold NUL: must be a 422, not a 500
        {"name": "x", "content": "y\u0000"},
    ):
        status, body, _ = api_client.call("POST", "/templates", token=token, body=bad)
        assert status == 422 and body["error"]["code"] == "validation_error", bad
    for bad in ({"content": ""}, {"name": None, "content": 1}, {"client_id": str(client.id)}, {"description": "\u0000"}):
        assert api_client.call("PUT", f"/templates/{tid}", token=token, body=bad)[0] == 422, bad
    for raw in ("{", "", "null"):
        status, body, _ = api_client.call("POST", "/templates", token=token, raw_body=raw)
        assert status in (400, 422) and body["error"]["code"] in ("invalid_json", "validation_error"), raw
    assert api_client.call("POST", "/templates", token=token, raw_body="{")[0] == 400
    assert snapshot(db) == before


def test_pagination(api_client, factory):
    client = factory.client()
    token = factory.token(factory.user(client, "admin"))
    for i in range(5):
        assert api_client.call("POST", "/templates", token=token, body={"name": f"t{i}", "content": f"{{{{v{i}}}}}"})[0] == 201
    got, cursor = [], None
    while True:
        status, body, _ = api_client.call("GET", "/templates", token=token, query={"limit": "2", **({"cursor": cursor} if cursor else {})})
        assert status == 200 and len(body["items"]) <= 2
        got += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert [t["name"] for t in got] == ["t4", "t3", "t2", "t1", "t0"]
    assert got[0]["variables"] == ["v4"]
    for query in ({"limit": "0"}, {"limit": "10000"}, {"cursor": json.dumps(["x"])}):
        assert api_client.call("GET", "/templates", token=token, query=query)[0] == 422
