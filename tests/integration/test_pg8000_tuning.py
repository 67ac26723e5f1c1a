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


# -- one round trip per statement (bitworks.db._one_round_trip) -----------------------------------
QUERIES = [
    (
        "SELECT %s::int + 1 AS n, %s::text AS t, %s::uuid AS u, %s::jsonb AS j",
        (41, "ünï", "5b7f0c2e-0b7a-4e38-9a55-1d6f2d1f0f11", '{"a": [1, null]}'),
    ),
    ("SELECT g AS n, g::text || %s AS t FROM generate_series(1, 3) AS g", ("x",)),
    ("SELECT NULL::int AS nothing, ARRAY[%s, %s]::text[] AS arr, %s::numeric AS num", ("a", None, "1.50")),
    ("SELECT 1 WHERE false", ()),
]


def _run(cursor: Any, sql: str, args: tuple[Any, ...]) -> tuple[Any, Any, Any]:
    cursor.execute(sql, args)
    rows = cursor.fetchall() if cursor.description else None
    description = [d[:2] for d in cursor.description] if cursor.description else None
    return rows, description, cursor.rowcount


@pytest.mark.parametrize(("sql", "args"), QUERIES)
def test_one_round_trip_answers_what_pg8000_answers(db: Any, database_url: str, sql: str, args: tuple[Any, ...]) -> None:
    import pg8000.dbapi
    from sqlalchemy import make_url

    url = make_url(database_url)
    plain = pg8000.dbapi.connect(
        user=url.username,
        password=url.password,
        host=url.host,
        port=url.port or 5432,
        database=url.database,
        unix_sock=url.query.get("unix_sock"),  # type: ignore[arg-type]
    )
    try:
        with db.connect() as conn:
            ours = conn.connection.dbapi_connection
            assert "execute_unnamed" in vars(ours)  # installed on the engine's connections only
            assert "execute_unnamed" not in vars(plain)
            assert _run(ours.cursor(), sql, args) == _run(plain.cursor(), sql, args)
    finally:
        plain.close()


def test_one_round_trip_keeps_errors_and_the_connection(db: Any) -> None:
    import pg8000.core
    import pg8000.dbapi

    flushes: list[int] = []
    flush = pg8000.core._flush
    with db.connect() as conn:
        raw = conn.connection.dbapi_connection
        cursor = raw.cursor()
        pg8000.core._flush = lambda sock: (flushes.append(1), flush(sock))[1]  # type: ignore[assignment]
        try:
            cursor.execute("SELECT %s::int", (7,))
            assert list(cursor.fetchall()) == [[7]] and len(flushes) == 1  # BEGIN in the same write
            assert raw._in_transaction  # the server's own word (ReadyForQuery), not ours
        finally:
            pg8000.core._flush = flush  # type: ignore[assignment]
        for bad, code in (("SELEC 1", "42601"), ("SELECT %s::uuid", "22P02"), ("SELECT no_such_column", "42703")):
            with pytest.raises(pg8000.dbapi.DatabaseError) as info:
                cursor.execute(bad, ("not-a-uuid",) if "%s" in bad else ())
            assert info.value.args[0]["C"] == code
            raw.rollback()
            cursor.execute("SELECT %s::text", ("still usable",))
            assert list(cursor.fetchall()) == [["still usable"]]
        cursor.execute("CREATE TEMP TABLE t1 (x int)")
        cursor.execute("INSERT INTO t1 SELECT generate_series(1, %s)", (5,))
        assert cursor.rowcount == 5
        raw.rollback()


def test_a_begin_that_never_met_its_statement_is_forgotten(db: Any) -> None:
    """pg8000 asks for BEGIN, then the statement fails before it is written (its arguments do not
    fit): after the rollback, an autocommit statement runs outside any transaction."""
    with db.connect() as conn:
        raw = conn.connection.dbapi_connection
        cursor = raw.cursor()
        cursor.paramstyle = "named"
        with pytest.raises(KeyError):
            cursor.execute("SELECT :a", {"b": 1})
        assert not raw._in_transaction
        raw.rollback()
        raw.autocommit = True
        try:
            cursor.execute("SELECT :a::int", {"a": 1})
            assert list(cursor.fetchall()) == [[1]]
            assert not raw._in_transaction
        finally:
            raw.autocommit = False


def test_remembered_row_descriptions_answer_as_parsed_ones(db: Any) -> None:
    """Each description is parsed once per connection: the second run of a statement answers as
    the first, a statement with other column types gets its own, and an adapter registered later
    applies at once (what was remembered is forgotten)."""
    import pg8000.core

    with db.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw.message_types[pg8000.core.ROW_DESCRIPTION] != raw.handle_ROW_DESCRIPTION  # ours is installed
        cursor = raw.cursor()
        runs = [_run(cursor, sql, args) for sql, args in QUERIES for _ in range(2)]
        for first, second in zip(runs[::2], runs[1::2], strict=True):
            assert first == second
        same_names = [_run(cursor, "SELECT %s::" + kind + " AS n", ("5",)) for kind in ("int", "text", "int")]
        assert [list(r[0]) for r in same_names] == [[[5]], [["5"]], [[5]]]
        original = raw.pg_types[23]
        raw.register_in_adapter(23, lambda data: f"int4 {data}")
        try:
            assert list(_run(cursor, "SELECT %s::int AS n", ("5",))[0]) == [["int4 5"]]
        finally:
            raw.register_in_adapter(23, original)
        assert list(_run(cursor, "SELECT %s::int AS n", ("5",))[0]) == [[5]]
        raw.rollback()
