"""bitworks.realtime: concurrent fan-out through the Management API (botocore Stubber), 410 cleanup,
disconnecting users."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from botocore.stub import ANY, Stubber
from sqlalchemy import text


@pytest.fixture
def management() -> Any:
    """The container's one management client, stubbed; records the ConnectionIds it was asked for."""
    import bitworks.aws
    from bitworks import realtime

    bitworks.aws.reset_clients()
    client = realtime._client()
    assert realtime._client() is client  # created once, reused
    calls: list[tuple[str, str]] = []
    lock = threading.Lock()

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        with lock:
            calls.append((model.name, params["ConnectionId"]))

    client.meta.events.register("before-parameter-build.apigatewaymanagementapi", record)
    with Stubber(client) as stub:
        stub.calls = calls  # type: ignore[attr-defined]
        yield stub
        stub.assert_no_pending_responses()
    client.meta.events.unregister("before-parameter-build.apigatewaymanagementapi", record)
    bitworks.aws.reset_clients()


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

    # Sends run concurrently, so which call meets the 410 is not fixed: every call must carry the
    # exact bytes, exactly one answers Gone, and whichever it was loses its row.
    management.add_response("post_to_connection", {}, {"ConnectionId": ANY, "Data": data})
    management.add_client_error("post_to_connection", "GoneException", "gone", 410, expected_params={"ConnectionId": ANY, "Data": data})
    management.add_response("post_to_connection", {}, {"ConnectionId": ANY, "Data": data})

    with session_scope() as session:
        result = realtime.push_to_users(session, [owner.id], event)

    assert sorted(c for _, c in management.calls) == ["a=", "b=", "c="]
    assert result.sent == 2 and result.failed == [] and len(result.gone) == 1
    assert connection_ids(db) == {"a=", "b=", "c="} - set(result.gone)


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

    for _ in range(3):
        management.add_response("post_to_connection", {}, {"ConnectionId": ANY, "Data": b'{"type":"pong"}'})
    with session_scope() as session:
        result = realtime.push_to_conversation(session, conversation, {"type": "pong"})
    assert result.sent == 3
    assert sorted(c for _, c in management.calls) == ["adm-1=", "own-1=", "own-2="]


def test_a_failing_send_is_reported_not_deleted(factory, db, management):
    from bitworks import realtime

    owner = factory.user(factory.client())
    add_connections(owner, "slow=")
    management.add_client_error("post_to_connection", "LimitExceededException", "slow down", 429)
    assert realtime.push_to_connection("slow=", {"type": "pong"}) is False
    assert connection_ids(db) == {"slow="}


def test_push_to_connection_with_a_session_deletes_a_gone_row(factory, db, management):
    from bitworks import realtime
    from bitworks.db import session_scope

    owner = factory.user(factory.client())
    add_connections(owner, "gone=", "kept=")
    management.add_client_error("post_to_connection", "GoneException", "gone", 410)
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
    for _ in range(2):
        management.add_response("delete_connection", {}, {"ConnectionId": ANY})
    with session_scope() as session:
        assert realtime.disconnect_users(session, [leaving.id]) == 2
    assert sorted(management.calls) == [("DeleteConnection", "l-1="), ("DeleteConnection", "l-2=")]
    assert connection_ids(db) == {"s-1="}
    # Nobody connected: no call at all (the Stubber would fail on an unexpected one).
    with session_scope() as session:
        assert realtime.disconnect_users(session, [leaving.id]) == 0


def test_disconnect_users_tolerates_sockets_already_gone(factory, db, management):
    from bitworks import realtime
    from bitworks.db import session_scope

    user = factory.user(factory.client())
    add_connections(user, "x=")
    management.add_client_error("delete_connection", "GoneException", "gone", 410)
    with session_scope() as session:
        assert realtime.disconnect_users(session, [user.id]) == 1
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
