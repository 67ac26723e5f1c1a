"""Prompt/message templates: admins of the client write, every user of the client reads."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bitworks import views
from bitworks.access import Principal, acting_client_id, require_admin, require_user
from bitworks.errors import Conflict, NotFound
from bitworks.models import Template
from bitworks.pagination import keyset_desc

if TYPE_CHECKING:
    from bitworks.bodies import Body  # a validated request body (bitworks.bodies; shapes in bitworks.schemas)

_NAME_TAKEN = "name: a template of this client already has this name"


def _name_free(session: Session, client_id: uuid.UUID, name: str, except_id: uuid.UUID | None = None) -> None:
    stmt = select(Template.id).where(Template.client_id == client_id, Template.name == name)
    if except_id is not None:
        stmt = stmt.where(Template.id != except_id)
    if session.scalars(stmt.limit(1)).first() is not None:
        raise Conflict(_NAME_TAKEN)


def _flush(session: Session) -> None:
    # The unique constraint settles a race the pre-check cannot see.
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(_NAME_TAKEN) from None


def _visible(session: Session, principal: Principal, template_id: uuid.UUID, *, for_update: bool = False) -> Template:
    require_user(principal)
    row = session.get(Template, template_id, with_for_update=for_update)
    if row is None or (not principal.is_superadmin and row.client_id != principal.client_id):
        raise NotFound("template not found")
    return row


def create(session: Session, principal: Principal, body: Body) -> dict[str, Any]:
    require_admin(principal)
    client_id = acting_client_id(session, principal, body.client_id)
    _name_free(session, client_id, body.name)
    row = Template(client_id=client_id, name=body.name, content=body.content, description=body.description)
    session.add(row)
    _flush(session)
    session.refresh(row)
    return {"template": views.template(row)}


def list_templates(session: Session, principal: Principal, client_id: uuid.UUID | None, limit: int, cursor: str | None) -> dict[str, Any]:
    require_user(principal)
    acting = acting_client_id(session, principal, client_id)
    stmt = select(Template).where(Template.client_id == acting)
    return keyset_desc(session, stmt, Template.created_at, Template.id, limit, cursor, views.template)


def get(session: Session, principal: Principal, template_id: uuid.UUID) -> dict[str, Any]:
    return {"template": views.template(_visible(session, principal, template_id))}


def update(session: Session, principal: Principal, template_id: uuid.UUID, body: Body) -> dict[str, Any]:
    row = _visible(session, principal, template_id, for_update=True)
    require_admin(principal)  # users of the client may read it, not change it
    if body.name is not None and body.name != row.name:
        _name_free(session, row.client_id, body.name, except_id=row.id)
        row.name = body.name
    if body.content is not None:
        row.content = body.content
    if "description" in body.model_fields_set:
        row.description = body.description
    row.updated_at = datetime.now(UTC)
    _flush(session)
    session.refresh(row)
    return {"template": views.template(row)}


def delete(session: Session, principal: Principal, template_id: uuid.UUID) -> None:
    """Conversations that used it keep going without one (template_id is set to NULL)."""
    row = _visible(session, principal, template_id, for_update=True)
    require_admin(principal)
    session.delete(row)
    session.flush()
