"""Database engine (created lazily, reused across warm invocations) and sessions.

Pool sizing follows Lambda: one invocation at a time per container, so one connection, pre-pinged
and recycled before Aurora/RDS Proxy idle timeouts. Behind RDS Proxy the proxy pools: NullPool.
No `SET` on connect (no client_encoding/isolation_level): it would pin RDS Proxy sessions.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote_plus

from sqlalchemy import Engine, create_engine, make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from bitworks.config import Settings, get_settings

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
    url = database_url(settings)
    connect_args: dict[str, object] = {"timeout": 10}
    context = _ssl_context(settings, url)
    if context is not None:
        connect_args["ssl_context"] = context
    if settings.db_proxy:
        return create_engine(url, poolclass=NullPool, connect_args=connect_args)
    return create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=0,
        pool_pre_ping=True,
        pool_recycle=240,
        pool_timeout=10,
        connect_args=connect_args,
    )


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


def new_session() -> Session:
    return Session(get_engine(), expire_on_commit=False, autoflush=False)


def finish(session: Session, ok: bool) -> None:
    """Commit (or roll back) and close; deferred effects (bitworks.outbox) run only after a commit."""
    from bitworks import outbox

    try:
        if ok:
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
