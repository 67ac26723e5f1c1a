"""The tenant-isolation matrix: every HTTP route x {another client's admin, another user of the
same client, no token, expired token}. No foreign data in any answer, nothing of the tenant changes."""

from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest
from sqlalchemy import text

from tests.support.template import http_routes

pytest_plugins = ["tests.support.n8n_stub"]  # `aws`: records Lambda invokes and pushes (no real AWS)

PUBLIC = {("POST", "/auth/register"), ("POST", "/auth/login"), ("GET", "/health"), ("OPTIONS", "/{proxy+}")}

# Templates are the client's: its users read them (admins write).
SAME_CLIENT_READABLE = {("GET", "/templates/{template_id}")}

BODIES = {
    ("POST", "/clients"): {"name": "Evil", "slug": f"evil-{uuid.uuid4().hex[:6]}"},
    ("PUT", "/clients/{client_id}"): {"name": "Renamed", "rotate_signing_secret": True},
    ("POST", "/users"): {"email": "intruder@example.com", "password": "intruder-pass-1"},
    ("PUT", "/users/{user_id}"): {"role": "admin", "display_name": "pwned"},
    ("POST", "/templates"): {"name": "evil", "content": "hi {{name}}"},
    ("PUT", "/templates/{template_id}"): {"content": "changed"},
    ("POST", "/conversations"): {"title": "mine"},
    ("PUT", "/conversations/{conversation_id}"): {"title": "changed", "mode": "human"},
    ("POST", "/conversations/{conversation_id}/messages"): {"content": "hello", "client_message_id": "x1"},
    ("POST", "/conversations/{conversation_id}/agent-messages"): {"content": "spoofed"},
    ("POST", "/conversations/{conversation_id}/context"): {"context_window": 3, "parameters": {"a": 1}},
    ("PUT", "/conversations/{conversation_id}/context"): {"context_window": 3, "parameters": {"a": 1}},
    ("POST", "/n8n/replies"): {"message_id": None, "content": "fake reply"},
    ("POST", "/admin/import"): {"users": [{"email": "bulk@example.com", "password": "bulk-password-1"}]},
    ("PUT", "/auth/password"): {"current_password": "wrong-password", "new_password": "new-password-1"},
    ("POST", "/api-keys"): {"name": "k", "scopes": ["conversations:read"]},
}


@pytest.fixture
def world(factory, api_client):
    """Tenant A with an owner, a conversation with messages and context, a template, a key and a
    job; tenant B's admin; another user of A."""
    a = factory.client()
    a_admin = factory.user(a, role="admin")
    owner = factory.user(a)
    peer = factory.user(a)
    b_admin = factory.user(factory.client(), role="admin")
    t_owner, t_admin = factory.token(owner), factory.token(a_admin)
    conversation = api_client.call("POST", "/conversations", token=t_owner, body={"title": "private"})[1]["conversation"]["id"]
    template = api_client.call("POST", "/templates", token=t_admin, body={"name": "greet", "content": "Hi {{name}}"})[1]["template"]["id"]
    api_client.call("PUT", f"/conversations/{conversation}/context", token=t_owner, body={"context_window": 5, "parameters": {"k": "v"}})
    from bitworks.db import session_scope
    from bitworks.models import ImportJob, Message

    message_ids = []
    with session_scope() as s:
        for seq in (1, 2):
            m = Message(
                id=uuid.uuid4(),
                conversation_id=uuid.UUID(conversation),
                seq=seq,
                role="user" if seq == 1 else "assistant",
                content=f"secret {seq}",
                status="replied" if seq == 1 else "sent",
            )
            s.add(m)
            message_ids.append(str(m.id))
        s.execute(text("UPDATE conversations SET last_seq = 2 WHERE id = :id"), {"id": conversation})
        job = ImportJob(client_id=a.id, created_by=a_admin.id, payload={"users": []}, status="succeeded")
        s.add(job)
        s.flush()
        job_id = str(job.id)
    key = api_client.call("POST", "/api-keys", token=t_admin, body={"name": "wf", "scopes": ["conversations:read"]})[1]["api_key"]
    ids = {
        "client_id": str(a.id),
        "user_id": str(owner.id),
        "template_id": template,
        "conversation_id": conversation,
        "message_id": message_ids[0],
        "job_id": job_id,
        "key_id": key["id"],
        "proxy": "x",
    }
    private = {conversation, *message_ids, job_id, key["id"], str(owner.id)}
    return {
        "a": a,
        "owner": owner,
        "peer": peer,
        "b_admin": b_admin,
        "ids": ids,
        "private": private,
        "foreign_all": private | {str(a.id), template, str(a_admin.id), str(peer.id)},
    }


def _tenant_snapshot(db, world) -> str:
    """Tenant A's rows that no caller here may change (the peer's own new rows excepted)."""
    sql = """
    SELECT md5(coalesce((SELECT string_agg(x, '|' ORDER BY x) FROM (
        SELECT c::text AS x FROM clients c WHERE c.id = :cid
        UNION ALL SELECT u::text FROM users u WHERE u.client_id = :cid
        UNION ALL SELECT t::text FROM templates t WHERE t.client_id = :cid
        UNION ALL SELECT v::text FROM conversations v WHERE v.id = :conv
        UNION ALL SELECT m::text FROM messages m WHERE m.conversation_id = :conv
        UNION ALL SELECT x::text FROM context x WHERE x.conversation_id = :conv
        UNION ALL SELECT k.id::text || coalesce(k.revoked_at::text, '') FROM api_keys k WHERE k.client_id = :cid
    ) rows), ''))
    """
    with db.connect() as conn:
        return str(conn.execute(text(sql), {"cid": world["ids"]["client_id"], "conv": world["ids"]["conversation_id"]}).scalar())


def _expired(user) -> str:
    from bitworks.config import get_settings

    s = get_settings()
    now = int(time.time())
    claims = {
        "sub": str(user.id),
        "cid": str(user.client_id),
        "role": user.role,
        "ver": 0,
        "iat": now - 7200,
        "exp": now - 3600,
        "iss": s.jwt_issuer,
        "aud": s.jwt_audience,
    }
    return jwt.encode(claims, s.jwt_secret.get_secret_value(), algorithm="HS256")


@pytest.mark.parametrize("caller", ["other_client_admin", "other_user_same_client", "no_token", "expired_token"])
def test_isolation_matrix(api_client, factory, db, world, caller, aws):
    token = {
        "other_client_admin": factory.token(world["b_admin"]),
        "other_user_same_client": factory.token(world["peer"]),
        "no_token": None,
        "expired_token": _expired(world["owner"]),
    }[caller]
    forbidden_ids = world["foreign_all"] if caller == "other_client_admin" else world["private"]
    before = _tenant_snapshot(db, world)
    checked = 0
    for method, route in sorted(http_routes()):
        path = route
        for name, value in world["ids"].items():
            path = path.replace("{" + name + "}", value).replace("{" + name + "+}", value)
        body = BODIES.get((method, route))
        if body and "message_id" in body:
            body = {**body, "message_id": world["ids"]["message_id"]}
        status, answer, _ = api_client.call(method, path, token=token, body=body)
        text_answer = json.dumps(answer)
        assert status < 500, (caller, method, route, status, answer)
        leaked = [i for i in forbidden_ids if i in text_answer]
        assert not leaked, (caller, method, route, status, leaked)
        if (method, route) not in PUBLIC:
            if caller in ("no_token", "expired_token"):
                assert status == 401 and answer["error"]["code"] == "unauthorized", (caller, method, route, status)
            elif "{" in route and not (caller == "other_user_same_client" and (method, route) in SAME_CLIENT_READABLE):
                # someone else's resource: never a success on it
                assert status in (401, 403, 404, 409, 422), (caller, method, route, status, answer)
        checked += 1
    assert checked == len(http_routes())
    assert _tenant_snapshot(db, world) == before, f"{caller} changed tenant A's data"
