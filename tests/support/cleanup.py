"""Emptying the test database between tests, safely while an emulator is still finishing work."""

from __future__ import annotations

import time
from typing import Any

ALL_TABLES = (
    "api_keys, import_jobs, rate_limits, ws_tickets, subscriptions, connections, context, messages, "
    "conversations, templates, users, clients"
)

# Deadlock victim and lock timeout: both mean "someone else holds a lock", and both are safe to retry.
_RETRYABLE = ("40P01", "55P03")


def truncate(engine: Any, tables: str = ALL_TABLES, deadline_s: float = 60.0) -> None:
    """TRUNCATE the tables, retrying while a late $disconnect or async worker holds row locks.

    A previous test's stack may still be running a handler (a socket closing, a dispatch retry) whose
    locks, taken in another order than TRUNCATE's, make Postgres pick the TRUNCATE as a deadlock
    victim. The victim is meant to be retried; a short lock_timeout keeps each attempt from queueing.
    """
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    give_up = time.monotonic() + deadline_s
    while True:
        try:
            with engine.begin() as conn:
                conn.execute(text("SET LOCAL lock_timeout = '2s'"))
                conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            return
        except DBAPIError as exc:
            if not any(code in str(exc.orig) for code in _RETRYABLE) or time.monotonic() > give_up:
                raise
