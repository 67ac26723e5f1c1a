"""Message history of a conversation (keyset on seq) and message deletion.

Paging rides on uq_messages_conversation_id_seq: one range scan of at most limit + 1 index
entries whatever the conversation's size (no OFFSET, no COUNT). Deleting leaves gaps in seq;
numbers are never reused or renumbered, so cursors stay valid.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, delete, select
from sqlalchemy.orm import Session

from bitworks import views
from bitworks.access import Principal, visible_conversation, visible_conversation_row
from bitworks.errors import Conflict, NotFound, ValidationFailed
from bitworks.models import Message

# A page is read as Core rows with the attribute names of Message (views.message takes either):
# hydrating 51 ORM objects costs more than the query itself.
_PAGE_COLUMNS = tuple(c.label("metadata_") if c.key == "metadata" else c for c in Message.__table__.c)


def history_query(conversation_id: uuid.UUID, limit: int, before: int | None = None, after: int | None = None) -> Select[Any]:
    """limit + 1 rows: newest first without `after` (caller reverses), oldest first with it."""
    stmt = select(*_PAGE_COLUMNS).where(Message.conversation_id == conversation_id)
    if after is not None:
        return stmt.where(Message.seq > after).order_by(Message.seq.asc()).limit(limit + 1)
    if before is not None:
        stmt = stmt.where(Message.seq < before)
    return stmt.order_by(Message.seq.desc()).limit(limit + 1)


def list_messages(
    session: Session,
    principal: Principal,
    conversation_id: uuid.UUID,
    *,
    limit: int,
    before: int | None,
    after: int | None,
) -> dict[str, Any]:
    """Items oldest first. next_cursor is a seq: with `after`, the largest on the page (pass it as
    `after`); otherwise the smallest (pass it as `before`); null when nothing further exists."""
    if before is not None and after is not None:
        raise ValidationFailed(
            "before and after are mutually exclusive",
            [
                {"field": "before", "message": "give before or after, not both"},
                {"field": "after", "message": "give before or after, not both"},
            ],
        )
    conversation = visible_conversation_row(session, principal, conversation_id)
    rows = list(session.execute(history_query(conversation.id, limit, before, after)))
    more = len(rows) > limit
    rows = rows[:limit]
    if after is None:
        rows.reverse()
        next_cursor = str(rows[0].seq) if more else None
    else:
        next_cursor = str(rows[-1].seq) if more else None
    return {"items": [views.message(row) for row in rows], "next_cursor": next_cursor}


def delete_message(session: Session, principal: Principal, message_id: uuid.UUID) -> None:
    """Owner or admin of the conversation's client. 409 for the message a turn is answering right
    now: removing it would strand the turn (wait until it is replied or failed)."""
    message = session.get(Message, message_id)
    if message is None:
        raise NotFound("message not found")
    # Locks the conversation row: a turn cannot start on this message while it is being deleted.
    conversation = visible_conversation(session, principal, message.conversation_id, for_update=True)
    if conversation.active_message_id == message.id:
        raise Conflict("the assistant is answering this message; delete it once the turn has ended")
    session.execute(delete(Message).where(Message.id == message.id))
