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
    """Every statement pg8000 puts on the wire (simple and extended protocol)."""
    import pg8000.core

    sent: list[str] = []
    simple, unnamed = pg8000.core.CoreConnection.execute_simple, pg8000.core.CoreConnection.execute_unnamed

    def spy_simple(self: Any, statement: str, *a: Any, **k: Any) -> Any:
        sent.append(statement.strip().lower())
        return simple(self, statement, *a, **k)

    def spy_unnamed(self: Any, statement: str, *a: Any, **k: Any) -> Any:
        sent.append(statement.strip().lower())
        return unnamed(self, statement, *a, **k)

    monkeypatch.setattr(pg8000.core.CoreConnection, "execute_simple", spy_simple)
    monkeypatch.setattr(pg8000.core.CoreConnection, "execute_unnamed", spy_unnamed)
    return sent


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
    wire.clear()
    status, data, _ = api_client.call("GET", path, token=chat["token"])
    assert status == 200 and data["items"] == []
    assert _control(wire) == [], wire
    assert len(wire) == 3, wire  # the token's user, the conversation, the page


def test_a_write_still_runs_in_one_transaction(api_client: Any, chat: dict[str, Any], wire: list[str]) -> None:
    path = f"/conversations/{chat['conversation']}/messages"
    api_client.call("GET", path, token=chat["token"])
    wire.clear()
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


def test_sending_a_message_costs_five_statements(api_client: Any, chat: dict[str, Any], wire: list[str], aws: Any) -> None:
    """begin, the token's user, the conversation locked with its client's settings and push
    audience, one statement for the rate count + seq/turn update + insert, commit."""
    path = f"/conversations/{chat['conversation']}/messages"
    assert api_client.call("POST", path, token=chat["token"], body={"content": "warm"})[0] == 201
    wire.clear()
    status, data, _ = api_client.call("POST", path, token=chat["token"], body={"content": "counted"})
    assert status == 201 and data["message"]["seq"] == 2
    kinds = [s.split()[0] for s in wire]
    assert kinds == ["begin", "select", "select", "with", "commit"], wire
    assert "for update" in wire[2] and "connections" in wire[2]
    assert "rate_limits" in wire[3] and "update conversations" in wire[3] and "into messages" in wire[3]
    assert len(aws.invokes) == 1  # the first message started the turn; this one waits behind it


def test_a_client_message_id_adds_its_repeat_check(api_client: Any, chat: dict[str, Any], wire: list[str], aws: Any) -> None:
    path = f"/conversations/{chat['conversation']}/messages"
    body = {"content": "once", "client_message_id": "c-1"}
    assert api_client.call("POST", path, token=chat["token"], body={"content": "warm"})[0] == 201
    wire.clear()
    status, first, _ = api_client.call("POST", path, token=chat["token"], body=body)
    assert status == 201
    assert [s.split()[0] for s in wire] == ["begin", "select", "select", "select", "with", "commit"], wire
    assert "client_message_id" in wire[3]
    wire.clear()
    status, again, _ = api_client.call("POST", path, token=chat["token"], body=body)
    assert status == 200 and again["message"]["id"] == first["message"]["id"]
    # The repeat answers from the lock and the check: nothing counted, nothing written.
    assert not any(s.startswith("with") for s in wire), wire
