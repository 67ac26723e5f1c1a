"""Per-conversation AI context: {context_window, parameters}, and the window of messages the next
turn would see. `context_window_messages` is the one query for that window (HTTP and dispatch).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from bitworks import views
from bitworks.access import Principal, visible_conversation_row
from bitworks.errors import Conflict, NotFound, ValidationFailed
from bitworks.jsonutil import dumps
from bitworks.models import Context, Message

if TYPE_CHECKING:
    from bitworks.bodies import Body  # a validated request body (bitworks.bodies; shapes in bitworks.schemas)

DEFAULT_WINDOW = 10
MAX_PARAMETERS_BYTES = 64 * 1024  # travels in every n8n payload


def check_text(field: str, value: str | None) -> None:
    # Postgres text and jsonb cannot hold NUL: refuse it here instead of failing in the driver.
    if value is not None and "\x00" in value:
        raise ValidationFailed(
            f"{field}: must not contain NUL characters",
            [{"field": field, "message": "must not contain NUL characters"}],
        )


def check_parameters(parameters: dict[str, Any]) -> None:
    encoded = dumps(parameters)
    if "\\u0000" in encoded:
        raise ValidationFailed(
            "parameters: must not contain NUL characters",
            [{"field": "parameters", "message": "must not contain NUL characters"}],
        )
    if len(encoded.encode()) > MAX_PARAMETERS_BYTES:
        message = f"must be at most {MAX_PARAMETERS_BYTES} bytes as JSON"
        raise ValidationFailed(f"parameters: {message}", [{"field": "parameters", "message": message}])


def context_window_messages(session: Session, conversation_id: uuid.UUID, window: int, before_seq: int | None = None) -> list[Message]:
    """The last `window` messages (only those with seq < before_seq when given), oldest first.
    One backward range scan on uq_messages_conversation_id_seq, then reversed in memory."""
    stmt = select(Message).where(Message.conversation_id == conversation_id)
    if before_seq is not None:
        stmt = stmt.where(Message.seq < before_seq)
    rows = list(session.scalars(stmt.order_by(Message.seq.desc()).limit(window)))
    rows.reverse()
    return rows


def _shape(session: Session, conversation_id: uuid.UUID, row: Context | None) -> dict[str, Any]:
    window = row.context_window if row is not None else DEFAULT_WINDOW
    return {
        "context": {
            "conversation_id": conversation_id,
            "context_window": window,
            "parameters": dict(row.parameters or {}) if row is not None else {},
            "messages": [views.message(m) for m in context_window_messages(session, conversation_id, window)],
            "created_at": row.created_at if row is not None else None,
            "updated_at": row.updated_at if row is not None else None,
        }
    }


def get(session: Session, principal: Principal, conversation_id: uuid.UUID) -> dict[str, Any]:
    """Without a stored row: the defaults (window 10, no parameters, null timestamps)."""
    conversation = visible_conversation_row(session, principal, conversation_id)
    row = session.scalars(select(Context).where(Context.conversation_id == conversation.id)).first()
    return _shape(session, conversation.id, row)


def create(session: Session, principal: Principal, conversation_id: uuid.UUID, body: Body) -> dict[str, Any]:
    """409 when the conversation already has a context (PUT replaces)."""
    conversation = visible_conversation_row(session, principal, conversation_id)
    check_parameters(body.parameters)
    stmt = (
        insert(Context)
        .values(conversation_id=conversation.id, context_window=body.context_window, parameters=body.parameters)
        .on_conflict_do_nothing(index_elements=[Context.conversation_id])
        .returning(Context)
    )
    row = session.scalars(stmt).first()
    if row is None:
        raise Conflict("this conversation already has a context; use PUT to replace it")
    return _shape(session, conversation.id, row)


def replace(session: Session, principal: Principal, conversation_id: uuid.UUID, body: Body) -> dict[str, Any]:
    """Create or replace, atomically (one upsert: concurrent PUTs cannot collide on the unique key)."""
    conversation = visible_conversation_row(session, principal, conversation_id)
    check_parameters(body.parameters)
    insert_stmt = insert(Context).values(conversation_id=conversation.id, context_window=body.context_window, parameters=body.parameters)
    upsert = insert_stmt.on_conflict_do_update(
        index_elements=[Context.conversation_id],
        set_={
            "context_window": insert_stmt.excluded.context_window,
            "parameters": insert_stmt.excluded.parameters,
            "updated_at": func.now(),
        },
    ).returning(Context)
    row = session.scalars(upsert, execution_options={"populate_existing": True}).one()
    return _shape(session, conversation.id, row)


def delete_context(session: Session, principal: Principal, conversation_id: uuid.UUID) -> None:
    """404 when the conversation has no stored context (so a client learns its DELETE did nothing);
    afterwards GET answers the defaults."""
    conversation = visible_conversation_row(session, principal, conversation_id)
    deleted = session.execute(delete(Context).where(Context.conversation_id == conversation.id).returning(Context.id)).first()
    if deleted is None:
        raise NotFound("this conversation has no context")
