"""Fixed-window counters in Postgres: per-user message rate, failed logins per account and per IP.

Postgres, not memory: Lambda containers share nothing, and API Gateway HTTP APIs throttle per
route, not per caller.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, text
from sqlalchemy.orm import Session

from bitworks.errors import RateLimited
from bitworks.models import RateLimit

# The counting rule, also composed into bigger statements (services.chat.send_user_message).
UPSERT_SQL = """
    INSERT INTO rate_limits (key, window_start, window_end, count)
    VALUES (:key, :start, :end, :amount)
    ON CONFLICT (key, window_start) DO UPDATE SET count = rate_limits.count + :amount
    RETURNING count
"""
_UPSERT = text(UPSERT_SQL)
_PEEK = text("SELECT count FROM rate_limits WHERE key = :key AND window_start = :start")


def window(seconds: int) -> tuple[datetime, datetime]:
    now = datetime.now(timezone.utc)
    epoch = int(now.timestamp())
    start = datetime.fromtimestamp(epoch - epoch % seconds, timezone.utc)
    return start, start + timedelta(seconds=seconds)


def hit(session: Session, key: str, limit: int, window_seconds: int, message: str = "too many requests") -> None:
    """Count one event; raise 429 once the window holds more than `limit`."""
    start, end = window(window_seconds)
    count = session.execute(_UPSERT, {"key": key, "start": start, "end": end, "amount": 1}).scalar_one()
    if count > limit:
        raise limited(message, end)


def limited(message: str, window_end: datetime) -> RateLimited:
    """The 429 for a window that ends at `window_end`."""
    return RateLimited(message, retry_after=_retry_after(window_end))


def _retry_after(window_end: datetime) -> int:
    return max(1, int((window_end - datetime.now(timezone.utc)).total_seconds()) + 1)


def exceeded(session: Session, key: str, limit: int, window_seconds: int) -> int | None:
    """Seconds to wait when `key` already reached `limit` in this window, else None (no counting)."""
    start, end = window(window_seconds)
    count = session.execute(_PEEK, {"key": key, "start": start}).scalar()
    if count is not None and count >= limit:
        return _retry_after(end)
    return None


def record(session: Session, key: str, window_seconds: int) -> None:
    start, end = window(window_seconds)
    session.execute(_UPSERT, {"key": key, "start": start, "end": end, "amount": 1})


def purge_expired(session: Session) -> int:
    result = session.execute(delete(RateLimit).where(RateLimit.window_end < datetime.now(timezone.utc)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
