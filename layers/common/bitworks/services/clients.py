"""Tenant management (superadmins only). Signing secrets are shown once: on create and rotation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bitworks import views
from bitworks.access import Principal, require_superadmin
from bitworks.auth import new_secret
from bitworks.errors import Conflict, NotFound
from bitworks.models import Client, User
from bitworks.pagination import keyset_desc

if TYPE_CHECKING:
    from bitworks.bodies import Body  # a validated request body (bitworks.bodies; shapes in bitworks.schemas)

_SLUG_TAKEN = "slug: already used by another client"


def _slug_free(session: Session, slug: str, except_id: uuid.UUID | None = None) -> None:
    stmt = select(Client.id).where(Client.slug == slug)
    if except_id is not None:
        stmt = stmt.where(Client.id != except_id)
    if session.scalars(stmt.limit(1)).first() is not None:
        raise Conflict(_SLUG_TAKEN)


def _flush(session: Session) -> None:
    # The pre-check covers the usual case; the unique index settles a race between two writers.
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(_SLUG_TAKEN) from None


def _get(session: Session, principal: Principal, client_id: uuid.UUID, *, for_update: bool = False) -> Client:
    require_superadmin(principal)
    row = session.get(Client, client_id, with_for_update=for_update)
    if row is None:
        raise NotFound("client not found")
    return row


def create(session: Session, principal: Principal, body: Body) -> dict[str, Any]:
    require_superadmin(principal)
    _slug_free(session, body.slug)
    secret = new_secret()
    row = Client(
        name=body.name,
        slug=body.slug,
        n8n_webhook_url=body.n8n_webhook_url,
        n8n_auth_header_name=body.n8n_auth_header_name,
        n8n_auth_header_value=body.n8n_auth_header_value,
        signing_secret=secret,
        allow_signup=body.allow_signup,
        allowed_origins=list(body.allowed_origins),
        settings=dict(body.settings),
    )
    session.add(row)
    _flush(session)
    session.refresh(row)
    return {"client": views.client(row, signing_secret=secret)}


def list_clients(session: Session, principal: Principal, limit: int, cursor: str | None) -> dict[str, Any]:
    require_superadmin(principal)
    return keyset_desc(session, select(Client), Client.created_at, Client.id, limit, cursor, views.client)


def get(session: Session, principal: Principal, client_id: uuid.UUID) -> dict[str, Any]:
    return {"client": views.client(_get(session, principal, client_id))}


# Fields a PUT may set to null (clearing them); the others keep their value when null or absent.
_NULLABLE = ("n8n_webhook_url", "n8n_auth_header_name", "n8n_auth_header_value")
_NOT_NULL = ("name", "slug", "allow_signup", "allowed_origins", "settings")


def update(session: Session, principal: Principal, client_id: uuid.UUID, body: Body) -> dict[str, Any]:
    row = _get(session, principal, client_id, for_update=True)
    given = body.model_fields_set
    if body.slug is not None and body.slug != row.slug:
        _slug_free(session, body.slug, except_id=row.id)
    for name in _NULLABLE:
        if name in given:
            setattr(row, name, getattr(body, name))
    for name in _NOT_NULL:
        value = getattr(body, name)
        if name in given and value is not None:
            setattr(row, name, value)
    secret = None
    if body.rotate_signing_secret:
        secret = new_secret()
        row.signing_secret = secret
    row.updated_at = datetime.now(UTC)
    _flush(session)
    session.refresh(row)
    return {"client": views.client(row, signing_secret=secret)}


def delete(session: Session, principal: Principal, client_id: uuid.UUID) -> None:
    """Close every open socket of the client's users, then delete (the schema cascades the rest)."""
    row = _get(session, principal, client_id, for_update=True)
    user_ids = list(session.scalars(select(User.id).where(User.client_id == row.id)))
    from bitworks import realtime  # lazily: only revocations close sockets

    realtime.disconnect_users(session, user_ids)
    session.delete(row)
    session.flush()
