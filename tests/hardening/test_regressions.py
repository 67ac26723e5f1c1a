"""Regression tests for the bugs the hardening suites found (fast, in-process; not marked slow).

1. A WebSocket frame nested deeper than Python's recursion limit escaped the handler as a
   RecursionError (no error event, crash while echoing `action`): bitworks/ws.py WsRequest._parse.
2. An n8n answer nested that deep crashed the dispatch (Lambda retries, then the failure queue)
   instead of failing the turn at once: bitworks/n8n.py interpret.
3. docs/openapi.json described single resources unwrapped and lists as one object: every 2xx
   body violated the document (tools/openapi.py _envelope).
4. A password change (PUT /auth/password) or an admin's reset (PUT /users/{id} with password,
   role or email) revoked the tokens but left the user's WebSockets open and authenticated:
   bitworks/services/auth.py change_password, bitworks/services/users.py update.
"""

from __future__ import annotations

import json

from tests.support.events import LambdaContext, ws_event
from tests.support.n8n_stub import AwsRecorder
from tests.support.template import load_handler

DEEP = "[" * 100_000 + "]" * 100_000


def _connect(user, client, connection_id: str) -> None:
    from bitworks.db import session_scope
    from bitworks.models import Connection

    with session_scope() as s:
        s.add(Connection(connection_id=connection_id, user_id=user.id, client_id=client.id))


def _connections(db) -> list[str]:
    from sqlalchemy import text

    with db.connect() as conn:
        return list(conn.execute(text("SELECT connection_id FROM connections")).scalars())


def test_deeply_nested_websocket_frame_gets_an_error_event(db, factory):
    client = factory.client()
    user = factory.user(client)
    _connect(user, client, "deep-conn")
    for logical_id in ("WsDefaultFunction", "WsSendMessageFunction", "WsSubscribeFunction"):
        out = load_handler(logical_id)(ws_event("$default", "deep-conn", raw_body=DEEP), LambdaContext(logical_id))
        event = json.loads(out["body"])
        assert event["type"] == "error" and event["error"]["code"] == "invalid_json", (logical_id, event)


def test_deeply_nested_n8n_answer_fails_the_turn_at_once():
    from bitworks.n8n import interpret

    outcome = interpret(200, DEEP.encode())
    assert outcome.kind == "failed" and outcome.code == "upstream_error"


def test_openapi_documents_the_envelopes():
    from tools.openapi import build

    paths = build()["paths"]
    single = paths["/users/{user_id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert single["required"] == ["user"] and single["properties"]["user"] == {"$ref": "#/components/schemas/UserOut"}
    listing = paths["/users"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert listing["required"] == ["items", "next_cursor"]
    key = paths["/api-keys"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    assert key["required"] == ["api_key"]


def test_password_change_closes_the_users_sockets(db, factory, api_client):
    client = factory.client()
    user = factory.user(client)
    _connect(user, client, "old-cred-conn")
    recorder = AwsRecorder().start()
    try:
        status, _, _ = api_client.call(
            "PUT", "/auth/password", token=factory.token(user), body={"current_password": user.password, "new_password": "a brand new one"}
        )
    finally:
        recorder.stop()
    assert status == 204
    assert recorder.deleted == ["old-cred-conn"] and _connections(db) == []


def test_admin_password_reset_closes_the_users_sockets(db, factory, api_client):
    client = factory.client()
    admin, user = factory.user(client, "admin"), factory.user(client)
    _connect(user, client, "reset-conn")
    _connect(admin, client, "admin-conn")
    recorder = AwsRecorder().start()
    try:
        status, _, _ = api_client.call("PUT", f"/users/{user.id}", token=factory.token(admin), body={"password": "reset by admin"})
        display, _, _ = api_client.call("PUT", f"/users/{admin.id}", token=factory.token(admin), body={"display_name": "Ada"})
    finally:
        recorder.stop()
    assert status == 200 and display == 200
    assert recorder.deleted == ["reset-conn"] and _connections(db) == ["admin-conn"]  # a display name revokes nothing
