"""Database engine (created lazily, reused across warm invocations) and sessions.

Pool sizing follows Lambda: one invocation at a time per container, so one connection, recycled
before Aurora/RDS Proxy idle timeouts. Behind RDS Proxy the proxy pools: NullPool.
No `SET` on connect (no client_encoding/isolation_level): it would pin RDS Proxy sessions.

Liveness without a round trip per request (see `_check_alive`): a server that restarts, fails over
or kills an idle session sends an error and closes the socket, which a zero-timeout select() sees;
only a connection idle for longer than DB_PING_AFTER_SECONDS also gets a real `SELECT 1`.
"""

from __future__ import annotations

import contextlib
import functools
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote_plus

from sqlalchemy import Engine, create_engine, event, exc, make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from bitworks.config import Settings, get_settings
from bitworks.sockets import idle_peer_closed

_engine: Engine | None = None
_lock = threading.Lock()


def database_url(settings: Settings) -> str:
    if settings.database_url:
        url = settings.database_url
        for prefix in ("postgresql+pg8000://", "postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+pg8000://" + url[len(prefix) :]
        return url
    from bitworks.secrets import get_secret_json

    secret = get_secret_json(str(settings.db_secret_arn))
    user = quote_plus(str(secret["username"]))
    password = quote_plus(str(secret["password"]))
    host = settings.db_host or secret["host"]
    port = secret.get("port", 5432)
    name = settings.db_name or secret.get("dbname", "postgres")
    return f"postgresql+pg8000://{user}:{password}@{host}:{port}/{name}"


def _ssl_context(settings: Settings, url: str) -> ssl.SSLContext | None:
    parsed = make_url(url)
    if "unix_sock" in parsed.query or parsed.host in (None, "", "localhost", "127.0.0.1"):
        return None
    # Verify the server: RDS CA bundle direct to Aurora (DB_SSL_CA_FILE); through RDS Proxy (ACM
    # certificates) the Amazon Trust Services roots, which certifi's bundle carries (Amazon Root CA 1).
    return ssl.create_default_context(cafile=settings.db_ssl_ca_file or _default_ca_file())


def _default_ca_file() -> str | None:
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi ships with requests in the layer
        return None
    return str(certifi.where())


def build_engine(settings: Settings | None = None) -> Engine:
    settings = settings or get_settings()
    _memoize_paramstyle()
    url = database_url(settings)
    connect_args: dict[str, object] = {"timeout": 10}
    context = _ssl_context(settings, url)
    if context is not None:
        connect_args["ssl_context"] = context
    if settings.db_proxy:
        engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
        event.listen(engine, "connect", _on_connect)
        event.listen(engine, "checkin", _end_autocommit)
        return engine
    engine = create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=0,
        pool_recycle=240,
        pool_timeout=10,
        connect_args=connect_args,
    )
    event.listen(engine, "connect", _on_connect)
    event.listen(engine, "checkin", _end_autocommit)
    _watch_liveness(engine, settings.db_ping_after_seconds)
    return engine


# -- pg8000 hot spots ---------------------------------------------------------------------------
# Profiled on a warm GET of 50 messages (bench section 2): pg8000 rescans every statement's SQL
# character by character to turn %s into $1 (~0.3 ms for an ORM SELECT, on every execution), and
# parses each timestamp with strptime (~10 us each, 55 per page). Both have exact, cheaper forms.
_TIMESTAMP_OIDS = (1114, 1184)  # timestamp, timestamptz


def _fast_timestamp(original: Any) -> Any:
    from datetime import datetime

    def parse(data: str) -> Any:
        try:
            return datetime.fromisoformat(data)  # PostgreSQL's text output is ISO 8601
        except ValueError:  # infinity, BC dates, years past 9999: pg8000's own rules
            return original(data)

    return parse


def _on_connect(dbapi_connection: Any, record: object) -> None:
    from pg8000 import converters

    for oid, original in zip(_TIMESTAMP_OIDS, (converters.timestamp_in, converters.timestamptz_in), strict=True):
        dbapi_connection.register_in_adapter(oid, _fast_timestamp(original))
    _one_round_trip(dbapi_connection)
    _remember_row_descriptions(dbapi_connection)


def _remember_row_descriptions(connection: Any, limit: int = 512) -> None:
    """The server describes a statement's result columns on every execution (one write per
    statement asks for it), and pg8000 parses each description into a list of dicts: about 2 µs
    per column (25 µs for the 12 of a send's row lock), every time. A statement's description is
    the same bytes each time, so its parsed form is kept per connection, keyed by those bytes;
    pg8000 only reads it. An adapter registered later forgets what was kept, as it changes the
    input functions."""
    from pg8000 import core

    parse = connection.message_types[core.ROW_DESCRIPTION]
    parsed: dict[tuple[bytes, str], tuple[Any, Any]] = {}

    def handle_row_description(data: bytes, context: Any) -> None:
        key = (data, connection._client_encoding)  # names are decoded with it
        known = parsed.get(key)
        if known is None:
            parse(data, context)
            if len(parsed) >= limit:
                parsed.clear()
            parsed[key] = (context.columns, context.input_funcs)
            return
        context.columns, context.input_funcs = known
        if context.rows is None:
            context.rows = []

    original_register = connection.register_in_adapter

    def register_in_adapter(oid: int, in_func: Any) -> None:
        parsed.clear()
        original_register(oid, in_func)

    connection.message_types[core.ROW_DESCRIPTION] = handle_row_description
    connection.register_in_adapter = register_in_adapter


def _one_round_trip(connection: Any) -> None:
    """pg8000 runs each statement with parameters in three round trips: Parse and wait, Describe
    and wait, Bind + Execute and wait. The extended protocol allows them all in one write, and
    libpq's PQexecParams does just that: Parse, Bind, Describe (the portal), Execute, Sync. Errors
    are unchanged (the server skips to Sync and answers ErrorResponse, raised as before).

    pg8000 also sends the BEGIN of a transaction on its own and waits for it, right before the
    transaction's first statement. Here the BEGIN is remembered and goes out in the same write
    as that statement (its answer is read first); a rollback, or autocommit switched on, before
    any statement forgets it, as pg8000 would never have sent it then.

    A message POST went from 10 round trips to 3 with this, a GET of messages from 9 to 3. This
    connection only: other pg8000 users in the process (tests' raw connections, the bench floor)
    keep pg8000's own path. COPY (a stream) keeps it too."""
    from pg8000 import core

    original_unnamed, original_simple, original_rollback = (
        connection.execute_unnamed,
        connection.execute_simple,
        connection.rollback,
    )
    describe_portal = core.PORTAL + core.NULL_BYTE
    begin_wanted = False  # pg8000 asked for a BEGIN that is not sent yet

    def take_begin() -> bool:
        nonlocal begin_wanted
        wanted, begin_wanted = begin_wanted and not connection.autocommit, False
        return wanted

    def flush_and_read(begin: bool, context: core.Context) -> None:
        """Send what was written (the BEGIN first, when there is one) and read the answers."""
        try:
            core._flush(connection._sock)
        except AttributeError:  # pg8000's way of saying the socket is gone
            if connection._sock is None:
                raise core.InterfaceError("connection is closed") from None
            raise
        if begin:
            try:
                connection.handle_messages(core.Context("begin transaction"))
            except Exception:
                # The statement's answer is on the wire too: read it, then report the BEGIN's error.
                with contextlib.suppress(Exception):
                    connection.handle_messages(context)
                raise
        connection.handle_messages(context)

    def execute_simple(statement: str) -> Any:
        nonlocal begin_wanted
        if statement == "begin transaction":
            begin_wanted = True
            return core.Context(statement)
        begin = take_begin()
        if not begin:
            return original_simple(statement)
        connection.send_QUERY("begin transaction")
        connection.send_QUERY(statement)
        context = core.Context(statement)
        flush_and_read(begin, context)
        return context

    def execute_unnamed(statement: str, vals: Any = (), oids: Any = (), stream: Any = None) -> Any:
        if stream is not None:  # COPY: pg8000's own path, after the BEGIN it asked for
            if take_begin():
                original_simple("begin transaction")
            return original_unnamed(statement, vals=vals, oids=oids, stream=stream)
        params = core.make_params(connection.py_types, vals)  # before any write: it may raise
        begin = take_begin()
        if begin:
            connection.send_QUERY("begin transaction")
        connection.send_PARSE(core.NULL_BYTE, statement, oids)
        connection.send_BIND(core.NULL_BYTE, params)
        connection._send_message(core.DESCRIBE, describe_portal)
        connection.send_EXECUTE()
        core._write(connection._sock, core.SYNC_MSG)
        context = core.Context(statement)
        flush_and_read(begin, context)
        return context

    def rollback() -> None:
        nonlocal begin_wanted
        begin_wanted = False
        original_rollback()

    connection.execute_unnamed = execute_unnamed
    connection.execute_simple = execute_simple
    connection.rollback = rollback


def _memoize_paramstyle() -> None:
    """pg8000's convert_paramstyle output depends on (style, SQL) only, and SQLAlchemy sends the
    same few hundred SQL strings again and again: cache the rewrite, rebuild the values."""
    import pg8000.legacy

    original = pg8000.legacy.convert_paramstyle
    if getattr(original, "memoized", False):
        return

    @functools.lru_cache(maxsize=1024)
    def rewrite(style: str, query: str) -> tuple[str, tuple[str, ...] | None]:
        if style in ("numeric", "qmark", "format"):
            return original(style, query, ())[0], None
        # named / pyformat: learn the placeholder order from a recording mapping
        seen: list[str] = []

        class Recorder(dict):  # type: ignore[type-arg]
            def __getitem__(self, key: str) -> None:
                seen.append(key)

        statement = original(style, query, Recorder())[0]
        return statement, tuple(seen)

    def convert_paramstyle(style: str, query: str, args: Any) -> tuple[str, Any]:
        statement, names = rewrite(style, query)
        return statement, (args if names is None else tuple(args[n] for n in names))

    convert_paramstyle.memoized = True  # type: ignore[attr-defined]
    pg8000.legacy.convert_paramstyle = convert_paramstyle


def _end_autocommit(dbapi_connection: object, record: object) -> None:
    if dbapi_connection is not None:  # None: the connection was invalidated (a broken socket)
        dbapi_connection.autocommit = False  # type: ignore[attr-defined]


def autocommit_reads(connection: object) -> None:
    """Run a read-only unit of work without BEGIN/COMMIT: two round trips saved per request.

    Under READ COMMITTED every statement takes its own snapshot anyway, so reads see exactly what
    they would inside a transaction. pg8000's documented `autocommit` flag is client-side (no SET,
    so RDS Proxy does not pin); the pool's checkin turns it off again (`_end_autocommit`)."""
    connection.connection.dbapi_connection.autocommit = True  # type: ignore[attr-defined]


def _socket_says_closed(dbapi_connection: object) -> bool:
    """pg8000 keeps its socket in `_usock`; no socket there is not ours to judge."""
    sock = getattr(dbapi_connection, "_usock", None)
    return sock is not None and idle_peer_closed(sock)


def _watch_liveness(engine: Engine, ping_after_seconds: float) -> None:
    """Replaces pool_pre_ping, which costs a round trip on every checkout (every request)."""

    @event.listens_for(engine, "checkin")
    def _mark_idle(dbapi_connection: object, record: object) -> None:
        record.info["idle_since"] = time.monotonic()  # type: ignore[attr-defined]

    @event.listens_for(engine, "checkout")
    def _check_alive(dbapi_connection: object, record: object, proxy: object) -> None:
        idle_since = record.info.get("idle_since")  # type: ignore[attr-defined]
        if idle_since is None:  # just connected
            return
        if _socket_says_closed(dbapi_connection):
            raise exc.DisconnectionError("the server closed the connection")
        if time.monotonic() - idle_since > ping_after_seconds:
            # Silent losses (a NAT or a dead peer: no FIN) only show on the wire.
            try:
                engine.dialect.do_ping(dbapi_connection)  # type: ignore[arg-type]
            except Exception as error:
                raise exc.DisconnectionError(f"ping failed: {type(error).__name__}") from error


def get_engine() -> Engine:
    global _engine
    if _engine is None:
        with _lock:
            if _engine is None:
                _engine = build_engine()
    return _engine


def dispose_engine() -> None:
    global _engine
    with _lock:
        if _engine is not None:
            _engine.dispose()
        _engine = None


def new_session(readonly: bool = False) -> Session:
    """readonly: no BEGIN/COMMIT (see autocommit_reads); for routes that only read."""
    session = Session(get_engine(), expire_on_commit=False, autoflush=False)
    if readonly:
        session.info["readonly"] = True
    return session


@event.listens_for(Session, "after_begin")
def _begin_readonly(session: Session, transaction: object, connection: object) -> None:
    if session.info.get("readonly"):
        autocommit_reads(connection)


def finish(session: Session, ok: bool) -> None:
    """Commit (or roll back) and close; deferred effects (bitworks.outbox) run only after a commit."""
    from bitworks import outbox

    try:
        if ok and not session.info.get("readonly"):
            session.commit()
        else:
            session.rollback()
            outbox.discard(session)
    finally:
        session.close()
    if ok:
        outbox.run_deferred(session)


@contextmanager
def session_scope() -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error, always close."""
    session = new_session()
    try:
        yield session
    except BaseException:
        finish(session, ok=False)
        raise
    finish(session, ok=True)
