"""Passwords (scrypt, OWASP settings) and JWTs (HS256, every claim checked, algorithm pinned)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
import uuid
from functools import lru_cache
from typing import Any

from bitworks.config import get_settings
from bitworks.errors import Unauthorized

_R, _P = 8, 5
_DKLEN = 32
REPLY_AUDIENCE = "bitworks-n8n-reply"
# PyJWT (with the urllib/http.client/email stack its JWKS client pulls in) is imported where a
# token is made or read: functions that only hash passwords or mint secrets skip it at init, like
# every other function, whose bearer check loads it at its first request.


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, n: int | None = None) -> str:
    n = n or get_settings().scrypt_n
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=_R, p=_P, maxmem=64 * 1024 * 1024, dklen=_DKLEN)
    return f"scrypt${n}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=64 * 1024 * 1024,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@lru_cache(maxsize=1)
def dummy_hash() -> str:
    """Verified against for unknown emails, so both answers take the same time."""
    return hash_password("not-a-real-password")


@lru_cache(maxsize=1)
def _secret() -> str:
    settings = get_settings()
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    from bitworks.secrets import get_secret_string

    secret = get_secret_string(str(settings.jwt_secret_arn)).strip()
    if len(secret.encode()) < 32:
        raise RuntimeError("JWT secret from JWT_SECRET_ARN is shorter than 32 bytes")
    return secret


def issue_access_token(user_id: uuid.UUID, client_id: uuid.UUID | None, role: str, token_version: int) -> tuple[str, int, int]:
    settings = get_settings()
    now = int(time.time())
    exp = now + settings.access_token_ttl
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "role": role,
        "ver": token_version,
        "iat": now,
        "exp": exp,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "jti": _b64(os.urandom(9)),
    }
    if client_id is not None:
        claims["cid"] = str(client_id)
    import jwt

    return jwt.encode(claims, _secret(), algorithm="HS256"), settings.access_token_ttl, exp


# Tokens whose signature and claims were verified in this container, with the settings and secret
# they were verified under (tests and `make dev` reload those). A string's signature stays valid,
# so a repeat only needs its expiry checked again; the DB check of the token's user
# (access.authenticate_bearer) still runs on every request. PyJWT's decode costs ~0.2 ms per call
# (it checks the base64 one character at a time), on every request.
_VERIFIED: dict[tuple[str, str], tuple[object, dict[str, Any]]] = {}
_VERIFIED_MAX = 512


def decode_access_token(token: str) -> dict[str, Any]:
    settings, key = get_settings(), (token, _secret())
    known = _VERIFIED.get(key)
    if known is not None and known[0] is settings:
        if time.time() < known[1]["exp"]:  # PyJWT's rule (no leeway): expired once now >= exp
            return dict(known[1])
        _VERIFIED.pop(key, None)
        raise Unauthorized("invalid or expired token")
    claims = _decode_access_token(token)
    if len(_VERIFIED) >= _VERIFIED_MAX:
        try:
            del _VERIFIED[next(iter(_VERIFIED))]  # the oldest; another thread may have taken it
        except (KeyError, StopIteration, RuntimeError):
            pass
    _VERIFIED[key] = (settings, dict(claims))
    return claims


def _decode_access_token(token: str) -> dict[str, Any]:
    import jwt

    settings = get_settings()
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            _secret(),
            algorithms=["HS256"],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["sub", "role", "ver", "iat", "exp", "iss", "aud"]},
        )
        uuid.UUID(str(claims["sub"]))
        if claims.get("cid") is not None:
            uuid.UUID(str(claims["cid"]))
        if not isinstance(claims["ver"], int):
            raise ValueError("ver")
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        raise Unauthorized("invalid or expired token") from None
    return claims


def issue_reply_token(message_id: uuid.UUID, turn_id: uuid.UUID, ttl: int | None = None) -> tuple[str, int]:
    settings = get_settings()
    now = int(time.time())
    exp = now + (ttl or settings.reply_token_ttl)
    claims = {"sub": str(message_id), "tid": str(turn_id), "iat": now, "exp": exp, "iss": settings.jwt_issuer, "aud": REPLY_AUDIENCE}
    import jwt

    return jwt.encode(claims, _secret(), algorithm="HS256"), exp


def decode_reply_token(token: str) -> dict[str, Any]:
    import jwt

    settings = get_settings()
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            _secret(),
            algorithms=["HS256"],
            audience=REPLY_AUDIENCE,
            issuer=settings.jwt_issuer,
            options={"require": ["sub", "tid", "exp", "iss", "aud"]},
        )
        uuid.UUID(str(claims["sub"]))
        uuid.UUID(str(claims["tid"]))
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        raise Unauthorized("invalid or expired reply token") from None
    return claims


def new_secret(nbytes: int = 32) -> str:
    return _b64(os.urandom(nbytes))


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
