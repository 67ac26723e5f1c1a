"""Client-scoped API keys for n8n workflows (`Authorization: Bearer bwk_<prefix>_<secret>`).

Only a SHA-256 of the key is stored (keys carry 256 random bits, so a slow KDF buys nothing);
lookup is by the public prefix and the comparison is constant-time. A key acts as its client,
never as a superadmin, and only on routes that declare the scope it holds (bitworks.api).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bitworks import pagination
from bitworks.access import Principal, acting_client_id, require_admin, require_user
from bitworks.errors import NotFound, Unauthorized, ValidationFailed
from bitworks.models import ApiKey

if TYPE_CHECKING:
    from bitworks.bodies import Body  # a validated request body (bitworks.bodies; shapes in bitworks.schemas)

PREFIX = "bwk_"
_LAST_USED_RESOLUTION = timedelta(minutes=1)  # don't write a row on every request


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def view(row: ApiKey, key: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id,
        "client_id": row.client_id,
        "name": row.name,
        "prefix": PREFIX + row.prefix,
        "scopes": list(row.scopes),
        "expires_at": row.expires_at,
        "revoked_at": row.revoked_at,
        "last_used_at": row.last_used_at,
        "created_at": row.created_at,
    }
    if key is not None:
        out["key"] = key  # shown once
    return out


def create(session: Session, principal: Principal, body: Body) -> dict[str, Any]:
    require_user(principal)
    require_admin(principal)
    client_id = acting_client_id(session, principal, body.client_id)
    if body.expires_at is not None and (body.expires_at.tzinfo is None or body.expires_at <= datetime.now(timezone.utc)):
        raise ValidationFailed(
            "expires_at: must be a future time with a timezone",
            [{"field": "expires_at", "message": "must be a future time with a timezone"}],
        )
    prefix = os.urandom(6).hex()
    key = f"{PREFIX}{prefix}_{os.urandom(32).hex()}"
    row = ApiKey(
        client_id=client_id,
        name=body.name,
        prefix=prefix,
        key_hash=_hash(key),
        scopes=sorted(set(body.scopes)),
        created_by=principal.user_id,
        expires_at=body.expires_at,
    )
    session.add(row)
    session.flush()
    session.refresh(row)
    return {"api_key": view(row, key)}


def list_keys(session: Session, principal: Principal, client_id: uuid.UUID | None, limit: int, cursor: str | None) -> dict[str, Any]:
    require_user(principal)
    require_admin(principal)
    acting = acting_client_id(session, principal, client_id)
    stmt = select(ApiKey).where(ApiKey.client_id == acting)
    position = pagination.decode_cursor(cursor)
    if position is not None:
        at, row_id = position
        stmt = stmt.where((ApiKey.created_at < at) | ((ApiKey.created_at == at) & (ApiKey.id < row_id)))
    rows = list(session.scalars(stmt.order_by(ApiKey.created_at.desc(), ApiKey.id.desc()).limit(limit + 1)))
    result = pagination.page(rows, limit, lambda r: (r.created_at, r.id))
    result["items"] = [view(r) for r in result["items"]]
    return result


def revoke(session: Session, principal: Principal, key_id: uuid.UUID) -> None:
    require_user(principal)
    require_admin(principal)
    row = session.get(ApiKey, key_id)
    if row is None or (not principal.is_superadmin and row.client_id != principal.client_id):
        raise NotFound("API key not found")
    if row.revoked_at is None:
        row.revoked_at = datetime.now(timezone.utc)


def authenticate_api_key(session: Session, token: str) -> Principal:
    invalid = Unauthorized("invalid API key")
    parts = token[len(PREFIX) :].split("_", 1)
    if len(token) > 200 or len(parts) != 2 or not parts[0]:
        raise invalid
    row = session.scalars(select(ApiKey).where(ApiKey.prefix == parts[0])).first()
    # Compare against something even for an unknown prefix: same work either way.
    expected = row.key_hash if row is not None else _hash("no-such-key")
    if not hmac.compare_digest(_hash(token), expected) or row is None:
        raise invalid
    now = datetime.now(timezone.utc)
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        raise invalid
    if row.last_used_at is None or now - row.last_used_at > _LAST_USED_RESOLUTION:
        session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
    return Principal(user_id=None, client_id=row.client_id, role="api_key", scopes=frozenset(row.scopes), api_key_id=row.id)
