import json
import uuid

import pytest
from sqlalchemy import text


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
                "SELECT :id, g, CASE WHEN mod(g, 2) = 1 THEN 'user' ELSE 'assistant' END, 'message ' || g, "
                "CASE WHEN mod(g, 2) = 1 THEN 'replied' ELSE 'sent' END FROM generate_series(CAST(:first AS bigint), :last) g"
            ),
            {"id": conversation_id, "first": last - count + 1, "last": last},
        )


@pytest.fixture
def setup(factory, api_client):
    client = factory.client()
    owner = factory.user(client)
    admin = factory.user(client, "admin")
    status, data, _ = api_client.call("POST", "/conversations", token=factory.token(owner), body={})
    assert status == 201
    conv = data["conversation"]["id"]
    return {
        "tok": factory.token(owner),
        "admin_tok": factory.token(admin),
        "conv": conv,
        "path": f"/conversations/{conv}/context",
    }


def seqs(context):
    return [m["seq"] for m in context["messages"]]


def test_defaults_without_a_row(api_client, setup):
    status, data, _ = api_client.call("GET", setup["path"], token=setup["tok"])
    assert status == 200
    assert data == {
        "context": {
            "conversation_id": setup["conv"],
            "context_window": 10,
            "parameters": {},
            "messages": [],
            "created_at": None,
            "updated_at": None,
        }
    }
    add_messages(uuid.UUID(setup["conv"]), 14)
    context = api_client.call("GET", setup["path"], token=setup["tok"])[1]["context"]
    assert seqs(context) == list(range(5, 15))  # the last 10, oldest first
    assert context["messages"][0]["content"] == "message 5" and context["messages"][0]["role"] == "user"
    assert context["messages"][0]["conversation_id"] == setup["conv"]


def test_create_replace_delete(api_client, setup):
    add_messages(uuid.UUID(setup["conv"]), 8)
    body = {"context_window": 3, "parameters": {"customer": {"name": "Ann", "tier": "gold"}, "locale": "de"}}
    status, data, _ = api_client.call("POST", setup["path"], token=setup["tok"], body=body)
    assert status == 201, data
    created = data["context"]
    assert (created["context_window"], created["parameters"]) == (3, body["parameters"])
    assert seqs(created) == [6, 7, 8] and created["created_at"] and created["updated_at"]

    status, data, _ = api_client.call("POST", setup["path"], token=setup["tok"], body={"context_window": 5})
    assert (status, data["error"]["code"]) == (409, "conflict")
    assert api_client.call("GET", setup["path"], token=setup["tok"])[1]["context"]["context_window"] == 3

    # PUT replaces wholesale: omitted parameters become {}; an admin may do it too
    status, data, _ = api_client.call("PUT", setup["path"], token=setup["admin_tok"], body={"context_window": 5})
    assert status == 200, data
    replaced = data["context"]
    assert (replaced["context_window"], replaced["parameters"]) == (5, {})
    assert seqs(replaced) == [4, 5, 6, 7, 8]
    assert replaced["created_at"] == created["created_at"] and replaced["updated_at"] > created["updated_at"]
    assert api_client.call("GET", setup["path"], token=setup["tok"])[1]["context"] == replaced

    status, data, _ = api_client.call("DELETE", setup["path"], token=setup["tok"])
    assert status == 204 and data is None
    context = api_client.call("GET", setup["path"], token=setup["tok"])[1]["context"]
    assert (context["context_window"], context["created_at"]) == (10, None) and seqs(context) == list(range(1, 9))
    status, data, _ = api_client.call("DELETE", setup["path"], token=setup["tok"])
    assert (status, data["error"]["code"]) == (404, "not_found")

    # PUT creates when there is none; POST works again after a DELETE
    status, data, _ = api_client.call("PUT", setup["path"], token=setup["tok"], body={"context_window": 200, "parameters": {"a": 1}})
    assert status == 200 and data["context"]["created_at"] is not None and seqs(data["context"]) == list(range(1, 9))
    assert api_client.call("DELETE", setup["path"], token=setup["admin_tok"])[0] == 204
    assert api_client.call("POST", setup["path"], token=setup["admin_tok"], body={})[0] == 201


def test_bad_bodies(api_client, setup):
    cases = [
        {"context_window": 0},
        {"context_window": 201},
        {"context_window": "5"},
        {"context_window": 2.5},
        {"context_window": True},
        {"parameters": [1, 2]},
        {"parameters": "x"},
        {"parameters": {"k": "a\u0000b"}},
        {"parameters": {"big": "x" * 19_000, "more": ["y" * 19_000] * 3}},
        {"context_window": 5, "messages": []},
    ]
    for method in ("POST", "PUT"):
        for body in cases:
            status, data, _ = api_client.call(method, setup["path"], token=setup["tok"], body=body)
            assert (status, data["error"]["code"]) == (422, "validation_error"), (method, body)
        for raw, code in (("{", "invalid_json"), ("", "invalid_json")):
            status, data, _ = api_client.call(method, setup["path"], token=setup["tok"], raw_body=raw)
            assert (status, data["error"]["code"]) == (400, code), (method, raw)
    assert api_client.call("GET", setup["path"], token=setup["tok"])[1]["context"]["created_at"] is None
    assert api_client.call("GET", f"/conversations/{uuid.uuid4()}/context", token=setup["tok"])[0] == 404


def test_window_function_for_dispatch(api_client, setup):
    from bitworks.db import session_scope
    from bitworks.services.context import context_window_messages

    conv = uuid.UUID(setup["conv"])
    add_messages(conv, 30)
    with session_scope() as s:
        assert [m.seq for m in context_window_messages(s, conv, 4)] == [27, 28, 29, 30]
        assert [m.seq for m in context_window_messages(s, conv, 4, before_seq=30)] == [26, 27, 28, 29]
        assert [m.seq for m in context_window_messages(s, conv, 10, before_seq=3)] == [1, 2]
        assert context_window_messages(s, conv, 10, before_seq=1) == []
        assert context_window_messages(s, uuid.uuid4(), 10) == []


def test_window_query_uses_the_seq_index(api_client, setup):
    from sqlalchemy.dialects import postgresql

    from bitworks.db import session_scope
    from bitworks.services.context import context_window_messages

    add_messages(uuid.UUID(setup["conv"]), 20_000)
    statements = []
    with session_scope() as s:
        s.execute(text("ANALYZE messages"))
    with session_scope() as s:
        from sqlalchemy import event

        def capture(conn, cursor, statement, parameters, context, executemany):
            statements.append(context.compiled.statement if context.compiled is not None else None)

        event.listen(s.get_bind(), "before_cursor_execute", capture)
        try:
            rows = context_window_messages(s, uuid.UUID(setup["conv"]), 200, before_seq=15_000)
        finally:
            event.remove(s.get_bind(), "before_cursor_execute", capture)
        assert [m.seq for m in rows] == list(range(14_800, 15_000))
        assert len(statements) == 1  # one query
        sql = str(statements[0].compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
        raw = s.execute(text("EXPLAIN (FORMAT JSON) " + sql)).scalar_one()
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    nodes, stack = [], [plan]
    while stack:
        node = stack.pop()
        nodes.append(node)
        stack.extend(node.get("Plans", []))
    assert "Sort" not in [n["Node Type"] for n in nodes]
    scan = next(n for n in nodes if n["Node Type"].startswith("Index"))
    assert (scan["Index Name"], scan["Scan Direction"]) == ("uq_messages_conversation_id_seq", "Backward")
