"""Pooled connections: reused without a ping round trip, replaced when the server ended them."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text


def _engine(database_url: str, **extra: str) -> Any:
    from bitworks.config import load_settings
    from bitworks.db import build_engine

    return build_engine(load_settings({"DATABASE_URL": database_url, "JWT_SECRET": "x" * 32, **extra}))


def _pid(engine: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar())


@pytest.fixture
def pings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    from sqlalchemy.dialects.postgresql.pg8000 import PGDialect_pg8000

    calls: list[int] = []
    real = PGDialect_pg8000.do_ping

    def counting(self: Any, dbapi_connection: Any) -> bool:
        calls.append(1)
        return real(self, dbapi_connection)

    monkeypatch.setattr(PGDialect_pg8000, "do_ping", counting)
    return calls


def test_warm_reuse_costs_no_ping(db: Any, database_url: str, pings: list[int]) -> None:
    engine = _engine(database_url)
    try:
        first = _pid(engine)
        assert [_pid(engine) for _ in range(5)] == [first] * 5
        assert pings == []
    finally:
        engine.dispose()


def test_a_connection_idle_too_long_is_pinged(db: Any, database_url: str, pings: list[int]) -> None:
    engine = _engine(database_url, DB_PING_AFTER_SECONDS="0")
    try:
        first = _pid(engine)
        assert _pid(engine) == first
        assert len(pings) == 1
    finally:
        engine.dispose()


def test_a_connection_the_server_ended_is_replaced_before_use(db: Any, database_url: str, pings: list[int]) -> None:
    engine = _engine(database_url)
    try:
        victim = _pid(engine)
        with db.connect() as admin:
            assert admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": victim}).scalar() is True
            # pg_terminate_backend only signals: wait until the backend is gone (bounded).
            admin.execute(
                text(
                    "DO $$ DECLARE deadline timestamptz := clock_timestamp() + interval '10 s'; BEGIN "
                    f"WHILE EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = {victim}) AND clock_timestamp() < deadline "
                    "LOOP PERFORM pg_sleep(0.01); END LOOP; END $$"
                )
            )
        # Without the liveness check this query would fail on the dead socket.
        replacement = _pid(engine)
        assert replacement != victim
        assert pings == []  # the socket told us; no round trip was needed
    finally:
        engine.dispose()
