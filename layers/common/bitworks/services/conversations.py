"""Conversations: create, list (keyset by updated_at desc, id desc), read, update, delete.

Tenancy comes from bitworks.access: the owner and the admins of the conversation's client see it;
anyone else gets 404. A template named in a body must belong to the conversation's client;
an unknown one, or another client's, is a 422 on `template_id` (existence is not leaked).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, literal, select, tuple_
from sqlalchemy.orm import Session

from bitworks import outbox, pagination, views
from bitworks.access import Principal, acting_client_id, require_user, visible_conversation, visible_user
from bitworks.errors import Forbidden, NotFound, ValidationFailed
from bitworks.models import Context, Conversation, Template
from bitworks.services.context import check_parameters, check_text

if TYPE_CHECKING:
    from bitworks.bodies import Body  # a validated request body (bitworks.bodies; shapes in bitworks.schemas)


def _check_template(session: Session, client_id: uuid.UUID, template_id: uuid.UUID) -> None:
    template = session.get(Template, template_id)
    if template is None or template.client_id != client_id:
        raise ValidationFailed("template_id: unknown template", [{"field": "template_id", "message": "unknown template"}])


def create(session: Session, principal: Principal, body: Body) -> dict[str, Any]:
    """The caller owns the new conversation; an optional initial context is stored with it."""
    require_user(principal)
    if principal.client_id is None or principal.user_id is None:
        # A superadmin belongs to no client, so it cannot be the user of a conversation.
        raise Forbidden("superadmins do not own conversations")
    check_text("title", body.title)
    if body.context is not None:
        check_parameters(body.context.parameters)
    if body.template_id is not None:
        _check_template(session, principal.client_id, body.template_id)
    conversation = Conversation(
        id=uuid.uuid4(),
        client_id=principal.client_id,
        user_id=principal.user_id,
        title=body.title,
        template_id=body.template_id,
    )
    session.add(conversation)
    session.flush()  # no ORM relationship orders the two inserts: the conversation goes first
    if body.context is not None:
        session.add(
            Context(
                conversation_id=conversation.id,
                context_window=body.context.context_window,
                parameters=body.context.parameters,
            )
        )
    session.flush()
    session.refresh(conversation)
    return {"conversation": views.conversation(conversation)}


def list_conversations(
    session: Session,
    principal: Principal,
    *,
    client_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    """A user lists its own; admins (and superadmins naming a client) all of the client's,
    optionally one user's. Reusable for GET /users/{user_id}/conversations (pass user_id)."""
    after = pagination.decode_cursor(cursor)
    target = None
    if user_id is not None:
        target = visible_user(session, principal, user_id)
        if principal.is_superadmin and client_id is None:
            client_id = target.client_id
    acting = acting_client_id(session, principal, client_id)
    if target is not None and target.client_id != acting:
        raise NotFound("user not found")
    if principal.role == "user":
        user_id = principal.user_id

    stmt = select(Conversation).where(Conversation.client_id == acting)
    if user_id is not None:
        stmt = stmt.where(Conversation.user_id == user_id)
    if after is not None:
        # Row comparison keeps this one range scan on (client_id[, user_id], updated_at, id).
        stmt = stmt.where(tuple_(Conversation.updated_at, Conversation.id) < tuple_(literal(after[0]), literal(after[1])))
    stmt = stmt.order_by(Conversation.updated_at.desc(), Conversation.id.desc()).limit(limit + 1)
    rows = list(session.scalars(stmt))
    result = pagination.page(rows, limit, lambda row: (row.updated_at, row.id))
    result["items"] = [views.conversation(row) for row in result["items"]]
    return result


def get(session: Session, principal: Principal, conversation_id: uuid.UUID) -> dict[str, Any]:
    return {"conversation": views.conversation(visible_conversation(session, principal, conversation_id))}


def update(session: Session, principal: Principal, conversation_id: uuid.UUID, body: Body) -> dict[str, Any]:
    """Change title, status, template_id or mode; `null` clears title and template_id.
    A real change bumps updated_at and pushes conversation.updated after the commit."""
    conversation = visible_conversation(session, principal, conversation_id, for_update=True)
    given = body.model_fields_set
    for name in ("status", "mode"):
        if name in given and getattr(body, name) is None:
            raise ValidationFailed(f"{name}: must not be null", [{"field": name, "message": "must not be null"}])
    changes: dict[str, Any] = {}
    if "title" in given:
        check_text("title", body.title)
        changes["title"] = body.title
    if "template_id" in given:
        if body.template_id is not None:
            _check_template(session, conversation.client_id, body.template_id)
        changes["template_id"] = body.template_id
    for name in ("status", "mode"):
        if getattr(body, name) is not None:
            changes[name] = getattr(body, name)
    changes = {k: v for k, v in changes.items() if getattr(conversation, k) != v}
    if not changes:
        return {"conversation": views.conversation(conversation)}
    for name, value in changes.items():
        setattr(conversation, name, value)
    conversation.updated_at = func.now()
    session.flush()
    session.refresh(conversation)
    shaped = views.conversation(conversation)
    _push_after_commit(session, conversation, {"type": "conversation.updated", "conversation": shaped})
    return {"conversation": shaped}


def _push_after_commit(session: Session, conversation: Conversation, event: dict[str, Any]) -> None:
    # After the commit, in a session of its own: nothing is pushed for a rolled-back change, and
    # connections that answer 410 are deleted for good. Push failures never fail the request.
    def push() -> None:
        from bitworks.db import session_scope
        from bitworks.realtime import push_to_conversation

        with session_scope() as push_session:
            push_to_conversation(push_session, conversation, event)

    outbox.defer(session, push)


def delete_conversation(session: Session, principal: Principal, conversation_id: uuid.UUID) -> None:
    """Messages, context and subscriptions go with it (ON DELETE CASCADE)."""
    conversation = visible_conversation(session, principal, conversation_id, for_update=True)
    session.execute(delete(Conversation).where(Conversation.id == conversation.id))
