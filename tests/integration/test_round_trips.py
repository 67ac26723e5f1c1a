"""What each request costs on the wire: statements pg8000 sends, BEGIN/COMMIT included.

Read-only routes run without a transaction (bitworks.db.autocommit_reads); the pooled connection
goes back transactional; a warm connection is reused without a liveness ping."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

pytest_plugins = ["tests.support.n8n_stub"]  # the aws fixture: stubbed Lambda and Management API


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement pg8000 puts on the wire (simple and extended protocol), and, under the
    name "(round trip)", every write the client then waits on (pg8000's _flush)."""
    import pg8000.core

    sent: list[str] = []
    simple, parse, flush = pg8000.core.CoreConnection.send_QUERY, pg8000.core.CoreConnection.send_PARSE, pg8000.core._flush

    def spy_simple(self: Any, statement: str, *a: Any, **k: Any) -> Any:
        sent.append(statement.strip().lower())
        return simple(self, statement, *a, **k)

    def spy_parse(self: Any, name: bytes, statement: str, *a: Any, **k: Any) -> Any:
        sent.append(statement.strip().lower())
        return parse(self, name, statement, *a, **k)

    def spy_flush(sock: Any) -> Any:
        ROUND_TRIPS.append(1)
        return flush(sock)

    ROUND_TRIPS.clear()
    monkeypatch.setattr(pg8000.core.CoreConnection, "send_QUERY", spy_simple)
    monkeypatch.setattr(pg8000.core.CoreConnection, "send_PARSE", spy_parse)
    monkeypatch.setattr(pg8000.core, "_flush", spy_flush)
    return sent


ROUND_TRIPS: list[int] = []


def _clear(wire: list[str]) -> None:
    wire.clear()
    ROUND_TRIPS.clear()


@pytest.fixture
def chat(factory: Any, api_client: Any) -> dict[str, Any]:
    client = factory.client()
    user = factory.user(client)
    token = factory.token(user)
    status, data, _ = api_client.call("POST", "/conversations", token=token, body={})
    assert status == 201, data
    return {"token": token, "conversation": data["conversation"]["id"]}


def _control(sent: list[str]) -> list[str]:
    return [s for s in sent if s in ("begin transaction", "commit", "rollback") or s.startswith("select 1")]


def test_a_get_sends_no_begin_commit_or_ping(api_client: Any, chat: dict[str, Any], wire: list[str]) -> None:
    path = f"/conversations/{chat['conversation']}/messages"
    assert api_client.call("GET", path, token=chat["token"])[0] == 200  # warm the pool
    _clear(wire)
    status, data, _ = api_client.call("GET", path, token=chat["token"])
    assert status == 200 and data["items"] == []
    assert _control(wire) == [], wire
    assert len(wire) == 3, wire  # the token's user, the conversation, the page
    assert len(ROUND_TRIPS) == 3  # one each: Parse/Bind/Describe/Execute/Sync in one write


def test_a_write_still_runs_in_one_transaction(api_client: Any, chat: dict[str, Any], wire: list[str]) -> None:
    path = f"/conversations/{chat['conversation']}/messages"
    api_client.call("GET", path, token=chat["token"])
    _clear(wire)
    status, _, _ = api_client.call("POST", "/conversations", token=chat["token"], body={"title": "second"})
    assert status == 201
    assert wire[0] == "begin transaction" and "commit" in wire, wire


def test_the_connection_goes_back_transactional(db: Any, api_client: Any, chat: dict[str, Any]) -> None:
    from bitworks.db import new_session

    assert api_client.call("GET", f"/conversations/{chat['conversation']}", token=chat["token"])[0] == 200
    session = new_session()
    try:
        session.execute(text("UPDATE conversations SET title = 'rolled back' WHERE id = :id"), {"id": chat["conversation"]})
        session.rollback()
    finally:
        session.close()
    with db.connect() as conn:
        title = conn.execute(text("SELECT title FROM conversations WHERE id = :id"), {"id": chat["conversation"]}).scalar()
    assert title != "rolled back"


def test_sending_a_message_costs_four_statements_in_three_round_trips(
    api_client: Any, chat: dict[str, Any], wire: list[str], aws: Any
) -> None:
    """begin, the conversation locked with its client's settings, push audience and the token's
    user, one statement for the rate count + seq/turn update + insert, commit."""
    path = f"/conversations/{chat['conversation']}/messages"
    assert api_client.call("POST", path, token=chat["token"], body={"content": "warm"})[0] == 201
    _clear(wire)
    status, data, _ = api_client.call("POST", path, token=chat["token"], body={"content": "counted"})
    assert status == 201 and data["message"]["seq"] == 2
    kinds = [s.split()[0] for s in wire]
    assert kinds == ["begin", "select", "with", "commit"], wire
    assert "for update" in wire[1] and "connections" in wire[1] and "join users" in wire[1]
    assert "rate_limits" in wire[2] and "update conversations" in wire[2] and "into messages" in wire[2]
    # pg8000 alone would take 10: BEGIN on its own, then Parse, Describe and Execute each wait
    assert len(ROUND_TRIPS) == 3  # BEGIN + the lock in one write, the send, the commit
    assert len(aws.invokes) == 1  # the first message started the turn; this one waits behind it


def test_a_client_message_id_adds_its_repeat_check(api_client: Any, chat: dict[str, Any], wire: list[str], aws: Any) -> None:
    path = f"/conversations/{chat['conversation']}/messages"
    body = {"content": "once", "client_message_id": "c-1"}
    assert api_client.call("POST", path, token=chat["token"], body={"content": "warm"})[0] == 201
    _clear(wire)
    status, first, _ = api_client.call("POST", path, token=chat["token"], body=body)
    assert status == 201
    assert [s.split()[0] for s in wire] == ["begin", "select", "select", "with", "commit"], wire
    assert "client_message_id" in wire[2]
    _clear(wire)
    status, again, _ = api_client.call("POST", path, token=chat["token"], body=body)
    assert status == 200 and again["message"]["id"] == first["message"]["id"]
    # The repeat answers from the lock and the check: nothing counted, nothing written.
    assert not any(s.startswith("with") for s in wire), wire


# -- the token's user, checked inside the send's row lock (auth="in_service") ----------------------
def _count(db: Any, conversation_id: str) -> int:
    with db.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM messages WHERE conversation_id = :c"), {"c": conversation_id}).scalar())


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE users SET token_version = token_version + 1 WHERE id = :u",  # revoked (password change)
        "UPDATE users SET role = 'admin' WHERE id = :u",  # role changed since the token was issued
        "DELETE FROM users WHERE id = :u",  # gone
    ],
)
def test_a_stale_token_cannot_send_and_stores_nothing(
    db: Any, factory: Any, api_client: Any, chat: dict[str, Any], aws: Any, change: str
) -> None:
    path = f"/conversations/{chat['conversation']}/messages"
    assert api_client.call("POST", path, token=chat["token"], body={"content": "first"})[0] == 201
    with db.begin() as conn:
        user_id = conn.execute(text("SELECT user_id FROM conversations WHERE id = :c"), {"c": chat["conversation"]}).scalar()
        if change.startswith("DELETE"):
            # the conversation must outlive its user for the join to be what decides
            other = factory.user(factory.client())
            conn.execute(text("UPDATE conversations SET user_id = :o WHERE id = :c"), {"o": other.id, "c": chat["conversation"]})
        conn.execute(text(change), {"u": user_id})
    before = _count(db, chat["conversation"])
    status, data, _ = api_client.call("POST", path, token=chat["token"], body={"content": "after"})
    assert status == 401 and data["error"]["code"] == "unauthorized", data
    assert _count(db, chat["conversation"]) == before


def _revoke_token_of(db: Any, chat: dict[str, Any]) -> None:
    """The chat owner's tokens go stale (as a password change makes them)."""
    with db.begin() as conn:
        conn.execute(
            text("UPDATE users SET token_version = token_version + 1 WHERE id = (SELECT user_id FROM conversations WHERE id = :c)"),
            {"c": chat["conversation"]},
        )


def test_an_unknown_conversation_is_404_for_a_good_token_and_401_for_a_stale_one(
    db: Any, factory: Any, api_client: Any, chat: dict[str, Any]
) -> None:
    missing = "/conversations/00000000-0000-4000-8000-000000000000/messages"
    assert api_client.call("POST", missing, token=chat["token"], body={"content": "x"})[0] == 404
    _revoke_token_of(db, chat)
    assert api_client.call("POST", missing, token=chat["token"], body={"content": "x"})[0] == 401


def test_another_users_conversation_stays_404(factory: Any, api_client: Any, chat: dict[str, Any]) -> None:
    stranger = factory.user(factory.client())
    status, data, _ = api_client.call(
        "POST", f"/conversations/{chat['conversation']}/messages", token=factory.token(stranger), body={"content": "x"}
    )
    assert status == 404, data


def test_a_route_that_never_checks_the_tokens_user_commits_nothing(db: Any, factory: Any, chat: dict[str, Any]) -> None:
    from bitworks.api import HttpApp
    from tests.support.events import LambdaContext, http_event

    app = HttpApp()

    @app.route("POST", "/probe", auth="in_service")
    def probe(req: Any) -> dict[str, Any]:
        req.session.execute(text("UPDATE conversations SET title = 'unchecked' WHERE id = :c"), {"c": chat["conversation"]})
        return {}

    event = http_event("POST", "/probe", route="/probe", path_params={}, body={}, token=chat["token"])
    response = app.handler(event, LambdaContext("Probe"))
    assert response["statusCode"] == 500
    with db.connect() as conn:
        title = conn.execute(text("SELECT title FROM conversations WHERE id = :c"), {"c": chat["conversation"]}).scalar()
    assert title != "unchecked"


@pytest.mark.parametrize(
    ("path", "body", "good_status"),
    [
        ("/conversations/{c}/messages", {"content": ""}, 422),  # malformed body
        ("/conversations/{c}/messages", {"content": "x", "surprise": 1}, 422),  # unknown field
        ("/conversations/not-a-uuid/messages", {"content": "x"}, 422),  # bad path
    ],
)
def test_a_stale_token_gets_401_before_any_other_complaint(
    db: Any, api_client: Any, chat: dict[str, Any], path: str, body: dict[str, Any], good_status: int
) -> None:
    """The send checks the token's user inside its row lock; a request refused before that (its
    body, its path) still answers 401 for a stale token, and the complaint for a good one."""
    path = path.format(c=chat["conversation"])
    assert api_client.call("POST", path, token=chat["token"], body=body)[0] == good_status
    _revoke_token_of(db, chat)
    status, data, _ = api_client.call("POST", path, token=chat["token"], body=body)
    assert status == 401 and data["error"]["code"] == "unauthorized", data
