import json
import uuid
from datetime import datetime

import pytest
from sqlalchemy import text


def ts(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def snapshot(engine, tables=("clients", "users", "connections")):
    with engine.connect() as conn:
        return {t: sorted(conn.execute(text(f"SELECT row_to_json(x)::text FROM {t} x")).scalars()) for t in tables}


@pytest.fixture
def su(factory):
    return factory.token(factory.user(None, "superadmin"))


NEW = {
    "name": "Acme",
    "slug": "acme",
    "n8n_webhook_url": "https://n8n.acme.example/webhook/chat",
    "n8n_auth_header_name": "X-Acme-Key",
    "n8n_auth_header_value": "n8n-header-value-do-not-leak",
    "allowed_origins": ["https://acme.example"],
    "settings": {"message_rate_per_minute": 30},
}


def test_lifecycle_and_secrets_shown_once(api_client, su):
    status, body, _ = api_client.call("POST", "/clients", token=su, body=NEW)
    assert status == 201, body
    created = body["client"]
    secret = created["signing_secret"]
    assert len(secret) >= 40
    assert created["has_signing_secret"] is True and created["has_n8n_auth_header_value"] is True
    assert "n8n-header-value-do-not-leak" not in json.dumps(body)
    assert created["settings"] == {"message_rate_per_minute": 30}
    cid = created["id"]

    seen = []
    for method, path in (("GET", f"/clients/{cid}"), ("GET", "/clients")):
        status, body, _ = api_client.call(method, path, token=su)
        assert status == 200
        seen.append(json.dumps(body))
    status, body, _ = api_client.call("PUT", f"/clients/{cid}", token=su, body={"name": "Acme Ltd"})
    assert status == 200 and body["client"]["name"] == "Acme Ltd" and "signing_secret" not in body["client"]
    assert ts(body["client"]["updated_at"]) > ts(created["updated_at"])
    seen.append(json.dumps(body))
    for text_ in seen:
        assert secret not in text_ and "n8n-header-value-do-not-leak" not in text_
        assert '"signing_secret"' not in text_

    status, body, _ = api_client.call("PUT", f"/clients/{cid}", token=su, body={"rotate_signing_secret": True})
    assert status == 200
    rotated = body["client"]["signing_secret"]
    assert rotated != secret and len(rotated) >= 40
    from bitworks.db import session_scope
    from bitworks.models import Client

    with session_scope() as s:
        assert s.get(Client, uuid.UUID(cid)).signing_secret == rotated

    # null clears an optional field; absent keeps it
    status, body, _ = api_client.call("PUT", f"/clients/{cid}", token=su, body={"n8n_auth_header_value": None})
    assert status == 200 and body["client"]["has_n8n_auth_header_value"] is False
    assert body["client"]["n8n_webhook_url"] == NEW["n8n_webhook_url"]

    status, body, _ = api_client.call("DELETE", f"/clients/{cid}", token=su)
    assert status == 204 and body is None
    assert api_client.call("GET", f"/clients/{cid}", token=su)[0] == 404
    assert api_client.call("DELETE", f"/clients/{cid}", token=su)[0] == 404


def test_slug_conflicts(api_client, su, factory, db):
    other = factory.client(slug="taken")
    status, body, _ = api_client.call("POST", "/clients", token=su, body={**NEW, "slug": "taken"})
    assert status == 409 and body["error"]["code"] == "conflict"
    mine = factory.client(slug="mine")
    before = snapshot(db)
    status, body, _ = api_client.call("PUT", f"/clients/{mine.id}", token=su, body={"slug": "taken", "name": "Renamed"})
    assert status == 409
    assert snapshot(db) == before
    # keeping one's own slug is not a conflict
    assert api_client.call("PUT", f"/clients/{other.id}", token=su, body={"slug": "taken"})[0] == 200


def test_only_superadmins(api_client, factory, db):
    client = factory.client()
    target = factory.client()
    before = snapshot(db)
    for role in ("admin", "user"):
        token = factory.token(factory.user(client, role))
        before = snapshot(db)
        calls = [
            ("POST", "/clients", NEW),
            ("GET", "/clients", None),
            ("GET", f"/clients/{client.id}", None),
            ("GET", f"/clients/{target.id}", None),
            ("PUT", f"/clients/{client.id}", {"name": "x"}),
            ("DELETE", f"/clients/{client.id}", None),
            ("DELETE", f"/clients/{target.id}", None),
        ]
        for method, path, body in calls:
            status, answer, _ = api_client.call(method, path, token=token, body=body)
            assert status == 403 and answer["error"]["code"] == "forbidden", (role, method, path)
            status, answer, _ = api_client.call(method, path, body=body)
            assert status == 401 and answer["error"]["code"] == "unauthorized", (method, path)
        assert snapshot(db) == before


def test_bad_input(api_client, su, factory, db):
    client = factory.client()
    before = snapshot(db)
    bodies = [
        (json.dumps({**NEW, "colour": "red"}), 422),
        (json.dumps({**NEW, "allow_signup": "yes"}), 422),
        (json.dumps({**NEW, "name": 5}), 422),
        (json.dumps({"slug": "no-name"}), 422),
        (json.dumps({**NEW, "slug": "Not A Slug"}), 422),
        (json.dumps({**NEW, "allowed_origins": ["https://a.example/path"]}), 422),
        (json.dumps({**NEW, "settings": {"message_rate_per_minute": 0}}), 422),
        (json.dumps({**NEW, "settings": {"ratio": float("nan")}}), 422),  # JSONB refuses NaN
        (json.dumps({**NEW, "settings": {"deep": [{"k\u0000": 1}]}}), 422),  # and NUL characters
        (json.dumps({**NEW, "name": "Ac\u0000me"}), 422),
        ("{nope", 400),
        ("", 400),
    ]
    for raw, expected in bodies:
        status, body, _ = api_client.call("POST", "/clients", token=su, raw_body=raw)
        assert status == expected, raw
        assert body["error"]["code"] == ("validation_error" if expected == 422 else "invalid_json")
    for raw, expected in ((json.dumps({"rotate_signing_secret": "yes"}), 422), (json.dumps({"bogus": 1}), 422), ("[", 400)):
        status, body, _ = api_client.call("PUT", f"/clients/{client.id}", token=su, raw_body=raw)
        assert status == expected, raw
    for method in ("GET", "PUT", "DELETE"):
        status, body, _ = api_client.call(method, "/clients/not-a-uuid", token=su, body={} if method == "PUT" else None)
        assert status == 422 and body["error"]["details"][0]["field"] == "client_id"
        status, body, _ = api_client.call(method, f"/clients/{uuid.uuid4()}", token=su, body={} if method == "PUT" else None)
        assert status == 404
    assert snapshot(db) == before


def test_pagination(api_client, su, factory):
    ids = {str(factory.client().id) for _ in range(7)}
    for limit in ("0", "10000", "x"):
        status, body, _ = api_client.call("GET", "/clients", token=su, query={"limit": limit})
        assert status == 422 and body["error"]["details"][0]["field"] == "limit"
    for cursor in ("garbage", "eyJhIjoxfQ", "W10"):
        status, body, _ = api_client.call("GET", "/clients", token=su, query={"cursor": cursor})
        assert status == 422 and body["error"]["details"][0]["field"] == "cursor"
    got, cursor, pages = [], None, 0
    while True:
        query = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        status, body, _ = api_client.call("GET", "/clients", token=su, query=query)
        assert status == 200 and len(body["items"]) <= 3
        got += [c["id"] for c in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(got) == len(set(got)) == 7 and set(got) == ids
    created = [ts(c["created_at"]) for c in api_client.call("GET", "/clients", token=su)[1]["items"]]
    assert created == sorted(created, reverse=True)


def test_delete_closes_sockets_of_its_users_only(api_client, su, factory, db):
    from bitworks.db import session_scope
    from bitworks.models import Connection
    from tests.support.fake_aws import FakeAws

    doomed, kept = factory.client(), factory.client()
    a, b, c = factory.user(doomed), factory.user(doomed, "admin"), factory.user(kept)
    with session_scope() as s:
        s.add_all([Connection(connection_id=f"conn-{u.id.hex[:8]}=", user_id=u.id, client_id=u.client_id) for u in (a, b, c)])
    fake = FakeAws().start().use()
    try:
        status, _, _ = api_client.call("DELETE", f"/clients/{doomed.id}", token=su)
        assert status == 204
    finally:
        fake.stop()
    assert sorted(fake.deleted) == sorted(f"conn-{u.id.hex[:8]}=" for u in (a, b))
    with db.connect() as conn:
        assert conn.execute(text("SELECT user_id FROM connections")).scalars().all() == [c.id]
        assert conn.execute(text("SELECT count(*) FROM users WHERE client_id = :c"), {"c": doomed.id}).scalar() == 0
    assert api_client.call("GET", f"/clients/{kept.id}", token=su)[0] == 200
