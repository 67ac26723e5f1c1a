"""User management inside a client, and one user's conversations.

Rules beyond access.py's:
- admins grant `user` and `admin` only; superadmin accounts are not managed through these routes;
- a user may change its own display_name and email, never its role (403) nor, here, its password
  (403: PUT /auth/password asks for the current one);
- a change of password, role or email bumps token_version, revoking every token of that user;
- an admin cannot delete itself (409): a client must not lose its last admin by accident, and the
  caller's own token would die mid-session.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bitworks import views
from bitworks.access import Principal, acting_client_id, require_admin, require_user, visible_user
from bitworks.auth import hash_password, verify_password
from bitworks.errors import Conflict, Forbidden, ValidationFailed
from bitworks.models import Conversation, User
from bitworks.pagination import keyset_desc

if TYPE_CHECKING:
    from bitworks.bodies import Body  # a validated request body (bitworks.bodies; shapes in bitworks.schemas)

_EMAIL_TAKEN = "email: already used in this client"


def _email_free(session: Session, client_id: uuid.UUID | None, email: str, except_id: uuid.UUID | None = None) -> None:
    stmt = select(User.id).where(User.email == email)
    stmt = stmt.where(User.client_id == client_id) if client_id else stmt.where(User.client_id.is_(None))
    if except_id is not None:
        stmt = stmt.where(User.id != except_id)
    if session.scalars(stmt.limit(1)).first() is not None:
        raise Conflict(_EMAIL_TAKEN)


def _flush(session: Session) -> None:
    # The unique index settles a race the pre-check cannot see.
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(_EMAIL_TAKEN) from None


def _target(session: Session, principal: Principal, user_id: uuid.UUID) -> User:
    require_user(principal)
    return visible_user(session, principal, user_id)


def create(session: Session, principal: Principal, body: Body) -> dict[str, Any]:
    require_admin(principal)
    client_id = acting_client_id(session, principal, body.client_id)
    _email_free(session, client_id, body.email)
    row = User(
        client_id=client_id,
        email=body.email,
        password_hash=hash_password(body.password),
        role=body.role,
        display_name=body.display_name,
    )
    session.add(row)
    _flush(session)
    session.refresh(row)
    return {"user": views.user(row)}


def list_users(session: Session, principal: Principal, client_id: uuid.UUID | None, limit: int, cursor: str | None) -> dict[str, Any]:
    require_admin(principal)
    acting = acting_client_id(session, principal, client_id)
    stmt = select(User).where(User.client_id == acting)
    return keyset_desc(session, stmt, User.created_at, User.id, limit, cursor, views.user)


def get(session: Session, principal: Principal, user_id: uuid.UUID) -> dict[str, Any]:
    return {"user": views.user(_target(session, principal, user_id))}


def update(session: Session, principal: Principal, user_id: uuid.UUID, body: Body) -> dict[str, Any]:
    row = _target(session, principal, user_id)
    given = body.model_fields_set
    if not principal.is_admin and "role" in given:
        raise Forbidden("only an admin may change a role")
    if row.role == "superadmin" and "role" in given:
        raise Forbidden("superadmin accounts are not managed here")
    if row.id == principal.user_id and "password" in given:
        # Your own password changes only with the current one (PUT /auth/password): a stolen token
        # alone must not be enough to take the account over.
        raise Forbidden("change your own password with PUT /auth/password")
    session.refresh(row, with_for_update=True)
    revoke = False
    if body.email is not None and body.email != row.email:
        if row.id == principal.user_id:
            _check_current_password(row, body.current_password)
        _email_free(session, row.client_id, body.email, except_id=row.id)
        row.email = body.email
        revoke = True
    if body.role is not None and body.role != row.role:
        row.role = body.role
        revoke = True
    if body.password is not None:
        row.password_hash = hash_password(body.password)
        revoke = True
    if "display_name" in given:
        row.display_name = body.display_name
    if revoke:
        row.token_version = row.token_version + 1
        from bitworks import realtime  # lazily: only revocations close sockets

        realtime.disconnect_users(session, [row.id])  # revoked tokens must not keep their sockets
    row.updated_at = datetime.now(UTC)
    _flush(session)
    session.refresh(row)
    return {"user": views.user(row)}


def _check_current_password(row: User, current_password: str | None) -> None:
    """Your own email changes only with your password, like your own password (PUT /auth/password)."""
    if current_password is None:
        message = "required to change your own email"
    elif not verify_password(current_password, row.password_hash):
        message = "incorrect"
    else:
        return
    raise ValidationFailed(f"current_password: {message}", [{"field": "current_password", "message": message}])


def delete(session: Session, principal: Principal, user_id: uuid.UUID) -> None:
    """Delete a user of the client: its sockets are closed first, its tokens die with the row."""
    row = _target(session, principal, user_id)
    require_admin(principal)  # a user may see itself, but not delete itself
    if row.role == "superadmin":
        raise Forbidden("superadmin accounts are not managed here")
    if row.id == principal.user_id:
        raise Conflict("an admin cannot delete itself")
    from bitworks import realtime  # lazily: only revocations close sockets

    realtime.disconnect_users(session, [row.id])
    session.delete(row)
    session.flush()


def list_conversations(session: Session, principal: Principal, user_id: uuid.UUID, limit: int, cursor: str | None) -> dict[str, Any]:
    """Same shape and order as GET /conversations: most recently updated first."""
    target = _target(session, principal, user_id)
    stmt = select(Conversation).where(Conversation.user_id == target.id)
    if target.client_id is not None:
        stmt = stmt.where(Conversation.client_id == target.client_id)  # rides ix_conversations_client_user_updated
    return keyset_desc(session, stmt, Conversation.updated_at, Conversation.id, limit, cursor, views.conversation)
