"""bitworks.realtime: concurrent fan-out through the Management API (a real local endpoint), 410 cleanup,
disconnecting users."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import text


@pytest.fixture
def management(db: Any) -> Any:
    """The Management API as a real local endpoint (tests.support.fake_aws); records every call."""
    from tests.support.fake_aws import FakeAws

    fake = FakeAws().start().use()
    yield fake
    fake.stop()


def add_connections(user: Any, *ids: str) -> None:
    from bitworks.db import session_scope
    from bitworks.models import Connection

    with session_scope() as session:
        session.add_all([Connection(connection_id=c, user_id=user.id, client_id=user.client_id) for c in ids])


def connection_ids(db: Any) -> set[str]:
    with db.connect() as conn:
        return set(conn.execute(text("SELECT connection_id FROM connections")).scalars())


def test_fan_out_deletes_the_gone_connection_and_delivers_to_the_others(factory, db, management):
    from bitworks import realtime
    from bitworks.db import session_scope

    owner = factory.user(factory.client())
    add_connections(owner, "a=", "b=", "c=")
    event = {"type": "typing", "conversation_id": str(uuid.uuid4()), "state": "on", "note": "ünïcode"}
    cid = event["conversation_id"].encode()
    data = b'{"type":"typing","conversation_id":"' + cid + b'","state":"on","note":"\xc3\xbcn\xc3\xafcode"}'

    # Sends run concurrently: every call must carry the exact bytes, the gone one loses its row.
    management.gone.add("b=")

    with session_scope() as session:
        result = realtime.push_to_users(session, [owner.id], event)

    assert sorted(management.raw_pushes) == [("a=", data), ("c=", data)]
    assert result.sent == 2 and result.failed == [] and result.gone == ["b="]
    assert connection_ids(db) == {"a=", "c="}
    assert management.unsigned == []


def test_push_to_conversation_reaches_owner_and_subscribers_only(factory, db, management):
    from bitworks import realtime
    from bitworks.db import session_scope
    from bitworks.models import Conversation, Subscription

    client = factory.client()
    owner, admin, bystander = factory.user(client), factory.user(client, "admin"), factory.user(client)
    add_connections(owner, "own-1=", "own-2=")
    add_connections(admin, "adm-1=", "adm-2=")
    add_connections(bystander, "by-1=")
    with session_scope() as session:
        conversation = Conversation(id=uuid.uuid4(), client_id=client.id, user_id=owner.id)
        session.add(conversation)
        session.flush()
        session.add(Subscription(connection_id="adm-1=", conversation_id=conversation.id))

    with session_scope() as session:
        result = realtime.push_to_conversation(session, conversation, {"type": "pong"})
    assert result.sent == 3
    assert sorted(management.raw_pushes) == [(c, b'{"type":"pong"}') for c in ("adm-1=", "own-1=", "own-2=")]


def test_a_failing_send_is_reported_not_deleted(factory, db, management):
    from bitworks import realtime

    owner = factory.user(factory.client())
    add_connections(owner, "slow=")
    management.failing["slow="] = 429
    assert realtime.push_to_connection("slow=", {"type": "pong"}) is False
    assert connection_ids(db) == {"slow="}
    assert management.requests == 3  # throttling is retried (bounded), then reported


def test_push_to_connection_with_a_session_deletes_a_gone_row(factory, db, management):
    from bitworks import realtime
    from bitworks.db import session_scope

    owner = factory.user(factory.client())
    add_connections(owner, "gone=", "kept=")
    management.gone.add("gone=")
    with session_scope() as session:
        assert realtime.push_to_connection("gone=", {"type": "pong"}, session=session) is False
    assert connection_ids(db) == {"kept="}


def test_disconnect_users_deletes_rows_and_closes_sockets(factory, db, management, api_client):
    from bitworks import realtime
    from bitworks.db import session_scope

    client = factory.client()
    leaving, staying = factory.user(client), factory.user(client, "admin")
    add_connections(leaving, "l-1=", "l-2=")
    add_connections(staying, "s-1=")
    with session_scope() as session:
        assert realtime.disconnect_users(session, [leaving.id]) == 2
    assert sorted(management.deleted) == ["l-1=", "l-2="]
    assert connection_ids(db) == {"s-1="}
    # Nobody connected: no call at all.
    with session_scope() as session:
        assert realtime.disconnect_users(session, [leaving.id]) == 0
    assert management.requests == 2


def test_disconnect_users_tolerates_sockets_already_gone(factory, db, management):
    from bitworks import realtime
    from bitworks.db import session_scope

    user = factory.user(factory.client())
    add_connections(user, "x=")
    management.gone.add("x=")
    with session_scope() as session:
        assert realtime.disconnect_users(session, [user.id]) == 1
    assert management.deleted == ["x="]
    assert connection_ids(db) == set()


def test_management_endpoint_is_built_from_api_id_region_and_stage(monkeypatch):
    from bitworks.config import get_settings
    from bitworks.realtime import management_endpoint

    monkeypatch.delenv("WS_MANAGEMENT_ENDPOINT", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI", raising=False)
    get_settings.cache_clear()
    try:
        assert management_endpoint() == "https://ws12345678.execute-api.us-east-1.amazonaws.com/prod"
        monkeypatch.setenv("WS_MANAGEMENT_ENDPOINT", "http://127.0.0.1:3001/")
        get_settings.cache_clear()
        assert management_endpoint() == "http://127.0.0.1:3001"
    finally:
        get_settings.cache_clear()


def test_a_push_that_cannot_start_fails_per_connection_not_its_caller(factory, db, management, monkeypatch):
    """No AWS credentials at all (or any error before the first request): every connection is
    reported failed, nothing raises into the request that pushed, no row is deleted."""
    from bitworks import awscall, realtime

    owner = factory.user(factory.client())
    add_connections(owner, "a=", "b=")

    def no_credentials() -> Any:
        raise awscall.AwsCallError(0, "NoCredentials", "no AWS credentials found")

    monkeypatch.setattr(awscall, "credentials", no_credentials)
    from bitworks.db import session_scope

    with session_scope() as session:
        result = realtime.push_to_users(session, [owner.id], {"type": "pong"})
    assert result.sent == 0 and sorted(result.failed) == ["a=", "b="] and result.gone == []
    assert connection_ids(db) == {"a=", "b="}
    assert management.requests == 0
    realtime.close_connections(["a="])  # closing is best-effort the same way
