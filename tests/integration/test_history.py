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


def message_id(conversation_id, seq):
    from bitworks.db import session_scope

    with session_scope() as s:
        return s.execute(
            text("SELECT id FROM messages WHERE conversation_id = :c AND seq = :s"), {"c": conversation_id, "s": seq}
        ).scalar_one()


@pytest.fixture
def setup(factory, api_client):
    client = factory.client()
    owner = factory.user(client)
    admin = factory.user(client, "admin")
    status, data, _ = api_client.call("POST", "/conversations", token=factory.token(owner), body={})
    assert status == 201
    conv_id = uuid.UUID(data["conversation"]["id"])
    return {
        "client": client,
        "owner": owner,
        "admin": admin,
        "tok": factory.token(owner),
        "admin_tok": factory.token(admin),
        "conv": conv_id,
    }


def get_page(api_client, setup, **query):
    status, data, _ = api_client.call(
        "GET", f"/conversations/{setup['conv']}/messages", token=setup["tok"], query={k: str(v) for k, v in query.items()}
    )
    assert status == 200, data
    return data


def test_empty_and_newest_page(api_client, setup):
    assert get_page(api_client, setup) == {"items": [], "next_cursor": None}
    add_messages(setup["conv"], 60)
    page = get_page(api_client, setup)
    assert [m["seq"] for m in page["items"]] == list(range(11, 61))  # default limit 50, oldest first
    assert page["next_cursor"] == "11"
    first = page["items"][0]
    assert set(first) == {
        "id",
        "conversation_id",
        "seq",
        "role",
        "content",
        "timestamp",
        "status",
        "client_message_id",
        "in_reply_to",
        "metadata",
    }
    assert (first["role"], first["content"], first["status"], first["metadata"]) == ("user", "message 11", "replied", {})
    page = get_page(api_client, setup, limit=10)
    assert [m["seq"] for m in page["items"]] == list(range(51, 61)) and page["next_cursor"] == "51"
    page = get_page(api_client, setup, limit=200)
    assert [m["seq"] for m in page["items"]] == list(range(1, 61)) and page["next_cursor"] is None
    # exactly `limit` messages in total: no next page
    page = get_page(api_client, setup, limit=60)
    assert len(page["items"]) == 60 and page["next_cursor"] is None
    # admins read it too
    status, data, _ = api_client.call("GET", f"/conversations/{setup['conv']}/messages", token=setup["admin_tok"], query={"limit": "1"})
    assert status == 200 and data["items"][0]["seq"] == 60


def test_walks_both_directions(api_client, setup):
    add_messages(setup["conv"], 23)
    seen, cursor = [], None
    while True:
        page = get_page(api_client, setup, limit=5, **({"before": cursor} if cursor else {}))
        seqs = [m["seq"] for m in page["items"]]
        assert seqs == sorted(seqs)
        seen = seqs + seen
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert cursor == str(seqs[0])
    assert seen == list(range(1, 24))

    seen, cursor = [], "0"
    while cursor is not None:
        page = get_page(api_client, setup, limit=5, after=cursor)
        seqs = [m["seq"] for m in page["items"]]
        seen += seqs
        cursor = page["next_cursor"]
        if cursor is not None:
            assert cursor == str(seqs[-1])
    assert seen == list(range(1, 24))
    # polling for newer from the newest seq: nothing, no cursor
    assert get_page(api_client, setup, after=23) == {"items": [], "next_cursor": None}
    assert get_page(api_client, setup, before=1) == {"items": [], "next_cursor": None}


def test_bad_queries(api_client, setup):
    path = f"/conversations/{setup['conv']}/messages"
    cases = [
        {"limit": "0"},
        {"limit": "201"},
        {"limit": "10000"},
        {"limit": "x"},
        {"before": "5", "after": "1"},
        {"before": "-1"},
        {"after": "-3"},
        {"before": "abc"},
        {"after": "1.5"},
        {"before": "9" * 30},
    ]
    for query in cases:
        status, data, _ = api_client.call("GET", path, token=setup["tok"], query=query)
        assert (status, data["error"]["code"]) == (422, "validation_error"), query
        assert data["error"]["message"]


def test_delete_message_keeps_numbering(api_client, factory, setup):
    add_messages(setup["conv"], 6)
    for token, seq in ((setup["tok"], 2), (setup["admin_tok"], 5)):
        status, data, _ = api_client.call("DELETE", f"/messages/{message_id(setup['conv'], seq)}", token=token)
        assert status == 204 and data is None
    assert [m["seq"] for m in get_page(api_client, setup)["items"]] == [1, 3, 4, 6]
    assert [m["seq"] for m in get_page(api_client, setup, limit=2, before=6)["items"]] == [3, 4]
    add_messages(setup["conv"], 1)
    assert get_page(api_client, setup)["items"][-1]["seq"] == 7  # numbers are never reused

    gone = message_id(setup["conv"], 1)
    assert api_client.call("DELETE", f"/messages/{gone}", token=setup["tok"])[0] == 204
    status, data, _ = api_client.call("DELETE", f"/messages/{gone}", token=setup["tok"])
    assert (status, data["error"]["code"]) == (404, "not_found")
    assert api_client.call("DELETE", f"/messages/{uuid.uuid4()}", token=setup["tok"])[0] == 404
    assert api_client.call("DELETE", "/messages/not-a-uuid", token=setup["tok"])[0] == 422


def test_delete_refused_for_message_in_flight(api_client, setup):
    from bitworks.db import session_scope

    add_messages(setup["conv"], 1)
    active = message_id(setup["conv"], 1)
    with session_scope() as s:
        s.execute(text("UPDATE conversations SET active_message_id = :m WHERE id = :c"), {"m": active, "c": setup["conv"]})
    status, data, _ = api_client.call("DELETE", f"/messages/{active}", token=setup["tok"])
    assert (status, data["error"]["code"]) == (409, "conflict")
    assert len(get_page(api_client, setup)["items"]) == 1


def _plan_nodes(plan):
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


def explain(session, stmt):
    from sqlalchemy.dialects import postgresql

    sql = str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    raw = session.execute(text("EXPLAIN (FORMAT JSON) " + sql)).scalar_one()
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    return list(_plan_nodes(plan))


def assert_index_only_plan(nodes, scan):
    types = [n["Node Type"] for n in nodes]
    assert "Sort" not in types and "Seq Scan" not in types, types
    scans = [n for n in nodes if n["Node Type"] in ("Index Scan", "Index Only Scan")]
    assert scans and scans[0]["Index Name"] == "uq_messages_conversation_id_seq", nodes
    assert scans[0]["Scan Direction"] == scan, nodes


def test_history_queries_ride_the_seq_index(api_client, factory, setup):
    """20k messages in two conversations: every page shape is one index range scan, no sort."""
    from bitworks.db import session_scope
    from bitworks.services.context import context_window_messages  # noqa: F401 - same index, see test_context
    from bitworks.services.history import history_query

    other = api_client.call("POST", "/conversations", token=setup["tok"], body={})[1]["conversation"]["id"]
    add_messages(setup["conv"], 12_000)
    add_messages(uuid.UUID(other), 8_000)
    with session_scope() as s:
        s.execute(text("ANALYZE messages"))
    with session_scope() as s:
        assert_index_only_plan(explain(s, history_query(setup["conv"], 50)), "Backward")
        assert_index_only_plan(explain(s, history_query(setup["conv"], 50, before=6_000)), "Backward")
        assert_index_only_plan(explain(s, history_query(setup["conv"], 200, after=6_000)), "Forward")
    page = get_page(api_client, setup, limit=3, before=6_000)
    assert [m["seq"] for m in page["items"]] == [5_997, 5_998, 5_999] and page["next_cursor"] == "5997"
    page = get_page(api_client, setup, limit=2, after=11_998)
    assert [m["seq"] for m in page["items"]] == [11_999, 12_000] and page["next_cursor"] is None
