"""Register, login, verify, password change and WebSocket tickets."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bitworks import ratelimit, views
from bitworks.access import Principal, require_user
from bitworks.auth import decode_access_token, dummy_hash, hash_password, issue_access_token, verify_password
from bitworks.config import get_settings
from bitworks.errors import Conflict, Forbidden, NotFound, RateLimited, Unauthorized, ValidationFailed
from bitworks.models import Client, User, WsTicket

if TYPE_CHECKING:
    from bitworks.bodies import Body  # a validated request body (bitworks.bodies; shapes in bitworks.schemas)

LOGIN_WINDOW = 15 * 60
TICKET_TTL = 60


def register(session: Session, body: Body) -> dict[str, Any]:
    client = session.get(Client, body.client_id)
    if client is None:
        raise NotFound("client not found")
    if not client.allow_signup:
        raise Forbidden("this client does not allow signup")
    user = User(client_id=client.id, email=body.email, password_hash=hash_password(body.password), role="user")
    session.add(user)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict("this email is already registered") from None
    session.refresh(user)
    return {"user": views.user(user)}


def _login_keys(body: Body, source_ip: str) -> tuple[str, str]:
    account = hashlib.sha256(f"{body.client_id}|{body.email}".encode()).hexdigest()
    return f"login:acct:{account}", f"login:ip:{source_ip}"


def login(session: Session, body: Body, source_ip: str) -> dict[str, Any]:
    settings = get_settings()
    account_key, ip_key = _login_keys(body, source_ip)
    for key, limit in ((account_key, settings.login_max_failures), (ip_key, settings.login_ip_max_failures)):
        wait = ratelimit.exceeded(session, key, limit, LOGIN_WINDOW)
        if wait:
            raise RateLimited("too many failed logins, try again later", retry_after=wait)
    stmt = select(User).where(User.email == body.email)
    stmt = stmt.where(User.client_id == body.client_id) if body.client_id else stmt.where(User.client_id.is_(None))
    user = session.scalars(stmt).first()
    # Unknown email and wrong password: same work, same answer.
    ok = verify_password(body.password, user.password_hash if user else dummy_hash())
    if user is None or not ok:
        ratelimit.record(session, account_key, LOGIN_WINDOW)
        ratelimit.record(session, ip_key, LOGIN_WINDOW)
        session.commit()  # the failure must count even though the request fails
        raise Unauthorized("invalid email or password")
    token, expires_in, _exp = issue_access_token(user.id, user.client_id, user.role, user.token_version)
    return {"access_token": token, "token_type": "Bearer", "expires_in": expires_in, "user": views.user(user)}


def verify(session: Session, principal: Principal, token: str) -> dict[str, Any]:
    require_user(principal)
    claims = decode_access_token(token)
    user = session.get(User, principal.user_id)
    if user is None:
        raise Unauthorized("invalid or expired token")
    expires_at = datetime.fromtimestamp(int(claims["exp"]), timezone.utc)
    return {"valid": True, "user": views.user(user), "expires_at": expires_at}


def change_password(session: Session, principal: Principal, body: Body) -> None:
    require_user(principal)
    user = session.get(User, principal.user_id, with_for_update=True)
    if user is None:
        raise Unauthorized("invalid or expired token")
    if not verify_password(body.current_password, user.password_hash):
        raise ValidationFailed("current_password: incorrect", [{"field": "current_password", "message": "incorrect"}])
    if body.new_password == body.current_password:
        raise ValidationFailed("new_password: must differ", [{"field": "new_password", "message": "must differ from the current password"}])
    session.execute(
        update(User)
        .where(User.id == user.id)
        .values(password_hash=hash_password(body.new_password), token_version=User.token_version + 1, updated_at=datetime.now(timezone.utc))
    )
    # Sockets opened with the old credentials must not outlive them (a stolen token's socket too).
    from bitworks import realtime

    realtime.disconnect_users(session, [user.id])


def issue_ws_ticket(session: Session, principal: Principal) -> dict[str, Any]:
    require_user(principal)
    ticket = "wst_" + os.urandom(24).hex()
    session.add(
        WsTicket(
            ticket_hash=hashlib.sha256(ticket.encode()).hexdigest(),
            user_id=principal.user_id,
            token_version=principal.token_version,
            expires_at=datetime.now(timezone.utc) + timedelta(seconds=TICKET_TTL),
        )
    )
    return {"ticket": ticket, "expires_in": TICKET_TTL}


def redeem_ws_ticket(session: Session, ticket: str | None) -> User | None:
    """Single use: the DELETE ... RETURNING claims it atomically. None when bad, used or expired."""
    if not ticket or len(ticket) > 200:
        return None
    row = session.execute(
        delete(WsTicket)
        .where(WsTicket.ticket_hash == hashlib.sha256(ticket.encode()).hexdigest())
        .returning(WsTicket.user_id, WsTicket.token_version, WsTicket.expires_at)
    ).first()
    if row is None or row.expires_at <= datetime.now(timezone.utc):
        return None
    user = session.get(User, row.user_id)
    if user is None or user.token_version != row.token_version:
        return None
    return user
