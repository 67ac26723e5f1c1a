"""WebSocket connections: open (redeem a ticket), close, identify (and refresh), subscribe.

A connection row is the WebSocket's identity: the ticket is redeemed once at $connect, and every
later message is attributed to the row's user. No row (disconnected, swept, user deleted) means
the connection is not authenticated any more.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bitworks.access import Principal, require_admin, visible_conversation
from bitworks.errors import BadRequest, Unauthorized
from bitworks.models import Connection, Subscription, User


def open_connection(session: Session, connection_id: str, ticket: str | None) -> uuid.UUID:
    """$connect: redeem the single-use ticket and store the connection; returns the user id."""
    from bitworks.services.auth import redeem_ws_ticket

    if not connection_id:
        raise BadRequest("missing connection id")
    user = redeem_ws_ticket(session, ticket)
    if user is None:
        raise Unauthorized("invalid, used or expired ticket")
    # API Gateway never reuses a connection id; the upsert just keeps a replayed $connect harmless.
    stmt = insert(Connection).values(connection_id=connection_id, user_id=user.id, client_id=user.client_id)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Connection.connection_id],
            set_={"user_id": user.id, "client_id": user.client_id, "connected_at": func.now(), "last_seen_at": func.now()},
        )
    )
    return user.id


def close_connection(session: Session, connection_id: str) -> bool:
    """$disconnect: drop the row (its subscriptions go with it: FK ON DELETE CASCADE)."""
    if not connection_id:
        return False
    result = session.execute(delete(Connection).where(Connection.connection_id == connection_id))
    return bool(getattr(result, "rowcount", 0))


def principal_for_connection(session: Session, connection_id: str) -> Principal:
    """Who is behind a connection; one UPDATE ... FROM users ... RETURNING also refreshes last_seen_at."""
    if not connection_id:
        raise Unauthorized("unknown connection")
    row = session.execute(
        update(Connection)
        .where(Connection.connection_id == connection_id, User.id == Connection.user_id)
        .values(last_seen_at=func.now())
        .returning(User.id, User.client_id, User.role, User.token_version)
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        raise Unauthorized("connection is not authenticated; reconnect with a new ticket")
    return Principal(user_id=row.id, client_id=row.client_id, role=row.role, token_version=row.token_version)


def subscribe(session: Session, principal: Principal, connection_id: str, conversation_id: uuid.UUID) -> dict[str, Any]:
    """Admins of the conversation's client follow it on this connection (human handoff)."""
    # Another client's conversation or another user's: 404; the owner (a plain user): 403.
    visible_conversation(session, principal, conversation_id)
    require_admin(principal)
    try:
        session.execute(
            insert(Subscription)
            .values(connection_id=connection_id, conversation_id=conversation_id)
            .on_conflict_do_nothing(index_elements=[Subscription.connection_id, Subscription.conversation_id])
        )
    except IntegrityError:
        # The connection row vanished since this message arrived (disconnect or sweep).
        raise Unauthorized("connection is not authenticated; reconnect with a new ticket") from None
    return {"type": "subscribed", "conversation_id": conversation_id}
