"""Push events to browsers through the API Gateway Management API (the one place that does).

Interface used across the layer (keep these signatures):
- push_to_conversation(session, conversation, event) -> PushResult: owner's connections + subscribers
- conversation_audience(session, conversation) + push_events_after_commit(ids, events): the same,
  with the audience read inside a transaction and the pushes made after its commit
- push_to_users(session, user_ids, event) -> PushResult
- push_to_connection(connection_id, event, session=None) -> bool
- push_to_connections(session, connection_ids, event) -> PushResult
- disconnect_users(session, user_ids) -> int: delete their connection rows and close the sockets

Sends to many sockets overlap (bitworks.awscall.call_many: up to 32 requests in flight over
kept-alive connections, no threads); a connection that answers 410 Gone is deleted while the
others still receive.
The endpoint is built from the API id, region and stage (not domainName, wrong behind a custom
domain); WS_MANAGEMENT_ENDPOINT or boto3's AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI override it.
The calls themselves go through bitworks.awscall (signed by hand; no boto3 on this path).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from bitworks.config import get_settings
from bitworks.jsonutil import dumps
from bitworks.models import Connection, Conversation


@dataclass
class PushResult:
    sent: int = 0
    gone: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def management_endpoint() -> str:
    settings = get_settings()
    override = settings.ws_management_endpoint or os.environ.get("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI")
    if override:
        return override.rstrip("/")
    return f"https://{settings.websocket_api_id}.execute-api.{settings.aws_region}.amazonaws.com/{settings.websocket_stage}"


def _each_or_all(ids: list[str], batch: Callable[[], list[Exception | None]]) -> list[Exception | None]:
    """The batch's per-connection errors; when the batch cannot start at all (no credentials, a
    bad endpoint setting), that error for every connection: a push never fails its caller."""
    try:
        return batch()
    except Exception as error:  # noqa: BLE001 - reported per connection by the callers
        return [error] * len(ids)


def _log_failure(message: str, connection_id: str, error: Exception) -> None:
    from bitworks.api import logger

    logger.warning(message, extra={"connection_id": connection_id, "error": type(error).__name__})


def push_to_connections(session: Session | None, connection_ids: Iterable[str], event: dict[str, Any]) -> PushResult:
    from bitworks.awscall import GoneError, post_to_connections

    ids = list(dict.fromkeys(connection_ids))
    result = PushResult()
    if not ids:
        return result
    errors = _each_or_all(ids, lambda: post_to_connections(management_endpoint(), ids, dumps(event).encode()))
    for connection_id, error in zip(ids, errors, strict=True):
        if error is None:
            result.sent += 1
        elif isinstance(error, GoneError):
            result.gone.append(connection_id)
        else:
            _log_failure("push failed", connection_id, error)
            result.failed.append(connection_id)
    if result.gone and session is not None:
        session.execute(delete(Connection).where(Connection.connection_id.in_(result.gone)))
    return result


def push_to_connection(connection_id: str, event: dict[str, Any], session: Session | None = None) -> bool:
    """One socket; with a session, a gone connection's row is deleted in it."""
    return push_to_connections(session, [connection_id], event).sent == 1


def connections_of_users(session: Session, user_ids: Iterable[uuid.UUID]) -> list[str]:
    ids = list(user_ids)
    if not ids:
        return []
    return list(session.scalars(select(Connection.connection_id).where(Connection.user_id.in_(ids))))


def push_to_users(session: Session, user_ids: Iterable[uuid.UUID], event: dict[str, Any]) -> PushResult:
    return push_to_connections(session, connections_of_users(session, user_ids), event)


def audience_sql(user_id: str, conversation_id: str) -> str:
    """The connections a conversation's events go to, its owner's and its subscribers', as an SQL
    array expression over two SQL expressions (a bind or a column): the one spelling of that rule,
    also read inside services.chat's row lock of a send."""
    return (
        f"ARRAY(SELECT connection_id FROM connections WHERE connections.user_id = {user_id}"
        f" UNION SELECT connection_id FROM subscriptions WHERE subscriptions.conversation_id = {conversation_id})"
    )


_AUDIENCE = text("SELECT " + audience_sql(":user_id", ":conversation_id"))


def conversation_audience(session: Session, conversation: Conversation) -> list[str]:
    """The connections a conversation's events go to: its owner's and its subscribers'."""
    ids = session.execute(_AUDIENCE, {"user_id": conversation.user_id, "conversation_id": conversation.id}).scalar_one()
    return list(ids or ())


def push_to_conversation(session: Session, conversation: Conversation, event: dict[str, Any]) -> PushResult:
    return push_to_connections(session, conversation_audience(session, conversation), event)


def push_events_after_commit(connection_ids: list[str], events: list[dict[str, Any]]) -> PushResult:
    """Push events, in order, to an audience read inside the committed transaction; only when a
    connection turned out gone does this open a session (to delete its row)."""
    total = PushResult()
    live = list(connection_ids)
    for event in events:
        result = push_to_connections(None, live, event)
        total.sent += result.sent
        total.failed.extend(result.failed)
        total.gone.extend(result.gone)
        live = [c for c in live if c not in result.gone]
    if total.gone:
        from bitworks.db import session_scope

        with session_scope() as session:
            session.execute(delete(Connection).where(Connection.connection_id.in_(total.gone)))
    return total


def disconnect_users(session: Session, user_ids: Iterable[uuid.UUID]) -> int:
    ids = connections_of_users(session, user_ids)
    if not ids:
        return 0
    session.execute(delete(Connection).where(Connection.connection_id.in_(ids)))
    _close_all(ids)
    return len(ids)


def close_connections(connection_ids: Iterable[str]) -> None:
    """Best-effort close of sockets whose rows are already deleted (the sweeper's stale connections)."""
    ids = list(dict.fromkeys(connection_ids))
    if not ids:
        return
    _close_all(ids)


def _close_all(connection_ids: list[str]) -> None:
    from bitworks.awscall import GoneError, delete_connections

    errors = _each_or_all(connection_ids, lambda: delete_connections(management_endpoint(), connection_ids))
    for connection_id, error in zip(connection_ids, errors, strict=True):
        if error is not None and not isinstance(error, GoneError):  # gone: API Gateway already dropped it
            _log_failure("closing a connection failed", connection_id, error)  # the row is deleted either way
