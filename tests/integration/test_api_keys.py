"""API keys for n8n: lifecycle, scopes, tenant isolation; nothing secret leaks."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest


@pytest.fixture
def tenant(factory):
    client = factory.client()
    admin = factory.user(client, role="admin")
    user = factory.user(client)
    return client, admin, user


def _conversation(api_client, factory, user) -> str:
    status, body, _ = api_client.call("POST", "/conversations", token=factory.token(user), body={"title": "support"})
    assert status == 201, body
    return body["conversation"]["id"]


def _key(api_client, factory, admin, scopes, **extra) -> dict:
    status, body, _ = api_client.call("POST", "/api-keys", token=factory.token(admin), body={"name": "n8n", "scopes": scopes, **extra})
    assert status == 201, body
    return body["api_key"]


def test_lifecycle_shown_once_listed_by_prefix_revoked(api_client, factory, tenant):
    client, admin, user = tenant
    created = _key(api_client, factory, admin, ["conversations:read"])
    key = created["key"]
    assert key.startswith("bwk_") and created["prefix"] == key[: len(created["prefix"])]
    status, body, _ = api_client.call("GET", "/api-keys", token=factory.token(admin))
    assert status == 200 and [k["id"] for k in body["items"]] == [created["id"]]
    assert key not in json.dumps(body) and "key_hash" not in json.dumps(body)

    cid = _conversation(api_client, factory, user)
    status, body, _ = api_client.call("GET", f"/conversations/{cid}", token=key)
    assert status == 200 and body["conversation"]["id"] == cid
    status, body, _ = api_client.call("GET", "/api-keys", token=factory.token(admin))
    assert body["items"][0]["last_used_at"] is not None

    assert api_client.call("DELETE", f"/api-keys/{created['id']}", token=factory.token(admin))[0] == 204
    status, body, _ = api_client.call("GET", f"/conversations/{cid}", token=key)
    assert status == 401 and body["error"]["code"] == "unauthorized"


def test_bad_keys_are_401_with_the_same_answer(api_client, factory, tenant):
    client, admin, user = tenant
    key = _key(api_client, factory, admin, ["conversations:read"])["key"]
    answers = []
    for bad in ("bwk_", "bwk_nope", "bwk_" + "0" * 12 + "_" + "1" * 64, key[:-1] + ("0" if key[-1] != "0" else "1"), "bwk_" + "x" * 300):
        status, body, _ = api_client.call("GET", "/conversations", token=bad)
        answers.append((status, body))
    assert all(a == (401, answers[0][1]) for a in answers), answers


def test_expired_key(api_client, factory, tenant):
    client, admin, user = tenant
    soon = (datetime.now(timezone.utc) + timedelta(seconds=30)).isoformat()
    created = _key(api_client, factory, admin, ["conversations:read"], expires_at=soon)
    from sqlalchemy import text

    from bitworks.db import get_engine

    with get_engine().begin() as conn:
        conn.execute(text("UPDATE api_keys SET expires_at = now() - interval '1 second'"))
    assert api_client.call("GET", "/conversations", token=created["key"])[0] == 401
    status, body, _ = api_client.call(
        "POST",
        "/api-keys",
        token=factory.token(admin),
        body={"name": "old", "scopes": ["conversations:read"], "expires_at": "2001-01-01T00:00:00Z"},
    )
    assert status == 422


def test_scopes_and_route_admission(api_client, factory, tenant):
    client, admin, user = tenant
    cid = _conversation(api_client, factory, user)
    reader = _key(api_client, factory, admin, ["conversations:read"])["key"]
    # a scope it lacks, a route no key may use, an admin-only route
    assert api_client.call("GET", f"/conversations/{cid}/messages", token=reader)[0] == 403
    assert api_client.call("POST", "/conversations", token=reader, body={"title": "x"})[0] == 403
    assert api_client.call("GET", "/users", token=reader)[0] == 403
    assert api_client.call("POST", "/api-keys", token=reader, body={"name": "n", "scopes": ["messages:read"]})[0] == 403
    assert api_client.call("POST", "/auth/ws-ticket", token=reader)[0] == 403
    # unknown scope and users creating keys
    assert api_client.call("POST", "/api-keys", token=factory.token(admin), body={"name": "n", "scopes": ["root"]})[0] == 422
    assert api_client.call("POST", "/api-keys", token=factory.token(user), body={"name": "n", "scopes": ["messages:read"]})[0] == 403
    full = _key(api_client, factory, admin, ["conversations:read", "messages:read", "context:read"])["key"]
    status, body, _ = api_client.call("GET", "/conversations", token=full)
    assert status == 200 and [c["id"] for c in body["items"]] == [cid]
    assert api_client.call("GET", f"/conversations/{cid}/messages", token=full)[0] == 200
    assert api_client.call("GET", f"/conversations/{cid}/context", token=full)[0] == 200


def test_tenant_isolation(api_client, factory, tenant):
    client, admin, user = tenant
    cid = _conversation(api_client, factory, user)
    other_client = factory.client()
    other_admin = factory.user(other_client, role="admin")
    other_key = _key(api_client, factory, other_admin, ["conversations:read", "messages:read", "context:read", "messages:write"])
    for path in (f"/conversations/{cid}", f"/conversations/{cid}/messages", f"/conversations/{cid}/context"):
        status, body, _ = api_client.call("GET", path, token=other_key["key"])
        assert status == 404 and cid not in json.dumps(body), path
    status, body, _ = api_client.call("GET", "/conversations", token=other_key["key"])
    assert status == 200 and body["items"] == []
    # another client's admin cannot see or revoke this client's keys
    mine = _key(api_client, factory, admin, ["conversations:read"])
    assert api_client.call("DELETE", f"/api-keys/{mine['id']}", token=factory.token(other_admin))[0] == 404
    status, body, _ = api_client.call("GET", "/api-keys", token=factory.token(other_admin))
    assert [k["id"] for k in body["items"]] == [other_key["id"]]
    # a superadmin names the client
    superadmin = factory.user(None, role="superadmin")
    status, body, _ = api_client.call("GET", "/api-keys", token=factory.token(superadmin), query={"client_id": str(client.id)})
    assert status == 200 and [k["id"] for k in body["items"]] == [mine["id"]]
