"""Who is calling, and what they may see: the one place for tenancy and role rules.

Rules (ARCHITECTURE.md): another client's resource, or another user's private resource, answers
404 (existence is not leaked); a role that may see but not change answers 403.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from bitworks.errors import Forbidden, NotFound, Unauthorized, ValidationFailed
from bitworks.models import Client, Conversation, User


class Owned(Protocol):
    """What the tenancy rules read of a conversation: an ORM object or a Core row."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def client_id(self) -> uuid.UUID: ...
    @property
    def user_id(self) -> uuid.UUID: ...


C = TypeVar("C", bound=Owned)

_TOKEN_USER = text("SELECT token_version, role, client_id FROM users WHERE id = :id")


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID | None
    client_id: uuid.UUID | None
    role: str  # superadmin | admin | user | api_key
    token_version: int = 0
    scopes: frozenset[str] = field(default_factory=frozenset)
    api_key_id: uuid.UUID | None = None

    @property
    def is_superadmin(self) -> bool:
        return self.role == "superadmin"

    @property
    def is_admin(self) -> bool:
        """Admin of its client (superadmins act as admins of whichever client they name)."""
        return self.role in ("admin", "superadmin")

    @property
    def is_api_key(self) -> bool:
        return self.role == "api_key"


class TokenClaims:
    """A verified access token whose user is not looked up yet. The lookup (is the user still
    there, with this token version, role and client?) can ride on a statement the route runs
    anyway: services.chat's row lock of a send. `principal_for` is the check, and records its
    answer here; HttpApp refuses to commit a route that never made it."""

    __slots__ = ("client_id", "principal", "role", "user_id", "version")

    def __init__(self, claims: dict[str, object]) -> None:
        self.user_id = uuid.UUID(str(claims["sub"]))
        self.version, self.role = claims["ver"], claims["role"]
        self.client_id = claims.get("cid")
        self.principal: Principal | None = None


def bearer_claims(authorization: str | None) -> TokenClaims | None:
    """The verified token of an Authorization header (401 when missing or invalid); None for an
    n8n API key, which authenticate_bearer looks up."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("missing bearer token")
    token = authorization[7:].strip()
    if token.startswith("bwk_"):
        return None
    from bitworks.auth import decode_access_token

    return TokenClaims(decode_access_token(token))


def principal_for(claims: TokenClaims, token_version: int | None, role: str | None, client_id: uuid.UUID | None) -> Principal:
    """The token against its user as stored now (None values: the user is gone). Deleted users,
    bumped token versions (password change, revocation) and role changes end here."""
    if token_version is None or role is None or token_version != claims.version or role != claims.role:
        raise Unauthorized("invalid or expired token")
    if claims.client_id != (str(client_id) if client_id else None):
        raise Unauthorized("invalid or expired token")
    claims.principal = Principal(user_id=claims.user_id, client_id=client_id, role=role, token_version=token_version)
    return claims.principal


def check_token_user(session: Session, claims: TokenClaims) -> Principal:
    # Three columns through Core: every request pays for this lookup, an ORM load costs twice as much.
    user = session.execute(_TOKEN_USER, {"id": claims.user_id}).first()
    if user is None:
        return principal_for(claims, None, None, None)
    return principal_for(claims, user.token_version, user.role, user.client_id)


def authenticate_bearer(session: Session, authorization: str | None) -> Principal:
    claims = bearer_claims(authorization)
    if claims is None:
        from bitworks.services.api_keys import authenticate_api_key

        assert authorization is not None  # bearer_claims refused a missing header
        return authenticate_api_key(session, authorization[7:].strip())
    return check_token_user(session, claims)


def require_user(principal: Principal) -> None:
    """Routes for people (JWT), not for API keys."""
    if principal.is_api_key:
        raise Forbidden("API keys may not use this route")


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("admin role required")


def require_superadmin(principal: Principal) -> None:
    if not principal.is_superadmin:
        raise Forbidden("superadmin role required")


def require_scope(principal: Principal, scope: str) -> None:
    if principal.is_api_key and scope not in principal.scopes:
        raise Forbidden(f"API key lacks scope {scope}")


def acting_client_id(session: Session, principal: Principal, requested: uuid.UUID | None) -> uuid.UUID:
    """The client a request acts inside. Superadmins must name one; others are pinned to theirs."""
    if principal.is_superadmin:
        if requested is None:
            raise ValidationFailed("client_id: required for superadmins", [{"field": "client_id", "message": "required for superadmins"}])
        if session.get(Client, requested) is None:
            raise NotFound("client not found")
        return requested
    assert principal.client_id is not None
    if requested is not None and requested != principal.client_id:
        raise NotFound("client not found")
    return principal.client_id


def visible_user(session: Session, principal: Principal, user_id: uuid.UUID) -> User:
    """A user the principal may see: itself, or (admins) a user of its client."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("user not found")
    if principal.is_superadmin:
        return user
    if principal.user_id == user.id:
        return user
    if user.client_id != principal.client_id or not (principal.is_admin or principal.is_api_key):
        raise NotFound("user not found")
    return user


def visible_conversation(session: Session, principal: Principal, conversation_id: uuid.UUID, *, for_update: bool = False) -> Conversation:
    """Owner, admins of the client, API keys of the client (and superadmins) see a conversation."""
    stmt = select(Conversation).where(Conversation.id == conversation_id)
    if for_update:
        stmt = stmt.with_for_update()
    return check_visible(principal, session.scalars(stmt).first())


_CONVERSATION_OWNERS = text("SELECT id, client_id, user_id FROM conversations WHERE id = :id")


def visible_conversation_row(session: Session, principal: Principal, conversation_id: uuid.UUID) -> Owned:
    """visible_conversation for reads that need only its ids: a Core row (id, client_id, user_id),
    half the cost of an ORM load on every GET of messages or context."""
    return check_visible(principal, session.execute(_CONVERSATION_OWNERS, {"id": conversation_id}).first())


def check_visible(principal: Principal, conversation: C | None) -> C:
    """The visibility rule itself, for callers that fetched the row in a wider query."""
    if conversation is None:
        raise NotFound("conversation not found")
    if principal.is_superadmin:
        return conversation
    if conversation.client_id != principal.client_id:
        raise NotFound("conversation not found")
    if principal.role == "user" and conversation.user_id != principal.user_id:
        raise NotFound("conversation not found")
    return conversation


def check_owned(principal: Principal, conversation: C | None) -> C:
    """Only the owner may act as the user of a conversation (send, retry)."""
    conversation = check_visible(principal, conversation)
    if conversation.user_id != principal.user_id:
        # Admins may see it but not speak as its user.
        raise Forbidden("only the conversation's owner may do this")
    return conversation


def owned_conversation(session: Session, principal: Principal, conversation_id: uuid.UUID, *, for_update: bool = False) -> Conversation:
    return check_owned(principal, visible_conversation(session, principal, conversation_id, for_update=for_update))
