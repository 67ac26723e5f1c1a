"""bitworks.db's pg8000 tuning gives exactly what pg8000 itself gives, only faster."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import text

STATEMENTS = [
    ("format", "SELECT a FROM t WHERE x = %s AND y = %s", ("1", "2")),
    ("format", "SELECT '%%s literal', \"q%%\" FROM t WHERE x = %s -- comment %s\n AND y = 1", ("1",)),
    ("format", "SELECT $$dollar %s$$, E'esc\\' %s' WHERE z = %s", ("z",)),
    ("named", "SELECT :a, :b, :a FROM t WHERE c = :c", {"a": 1, "b": 2, "c": 3}),
    ("pyformat", "SELECT %(a)s, %(b)s WHERE x = %(a)s", {"a": 1, "b": 2}),
    ("qmark", "SELECT ? , ?", (1, 2)),
    ("numeric", "SELECT :1, :2", (1, 2)),
]


@pytest.mark.parametrize(("style", "sql", "args"), STATEMENTS)
def test_memoized_paramstyle_equals_pg8000s(database_url: str, style: str, sql: str, args: Any) -> None:
    import pg8000.dbapi
    import pg8000.legacy

    from bitworks.db import get_engine

    get_engine()  # installs the memoized converter
    assert getattr(pg8000.legacy.convert_paramstyle, "memoized", False)
    for _ in range(2):  # cold and cached
        assert pg8000.legacy.convert_paramstyle(style, sql, args) == pg8000.dbapi.convert_paramstyle(style, sql, args)


def test_timestamps_parse_as_pg8000_parses_them(db: Any) -> None:
    import pg8000.converters

    values = [
        "2026-11-22 07:05:09.123456+00",
        "2026-11-22 07:05:09+05:30",
        "0001-01-01 00:00:00+00",
        "infinity",
        "-infinity",
        "0044-03-15 12:00:00+00 BC",
    ]
    with db.connect() as conn:
        adapters = conn.connection.dbapi_connection.pg_types
        assert adapters[1184] is not pg8000.converters.timestamptz_in  # ours is installed
        assert adapters[1114] is not pg8000.converters.timestamp_in
        conn.execute(text("SET LOCAL TimeZone = 'UTC'"))
        for value in values:
            got = conn.execute(text("SELECT CAST(:v AS timestamptz), CAST(:v AS timestamp)"), {"v": value}).one()
            raw = conn.execute(
                text("SELECT CAST(CAST(:v AS timestamptz) AS text), CAST(CAST(:v AS timestamp) AS text)"), {"v": value}
            ).one()
            assert got[0] == pg8000.converters.timestamptz_in(raw[0]), value
            assert got[1] == pg8000.converters.timestamp_in(raw[1]), value
        now = conn.execute(text("SELECT now()")).scalar()
    assert isinstance(now, datetime) and now.tzinfo is not None
    assert abs((now - datetime.now(timezone.utc)).total_seconds()) < 60
