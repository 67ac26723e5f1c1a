"""The embedded PostgreSQL (pgserver) for development and tests, unless DATABASE_URL is set.

pgserver ships a real PostgreSQL 16 in a wheel (CPython 3.9-3.12) and listens on a unix socket
inside its data directory. With cleanup_mode="stop" the server stops when the process that
started it exits, so the caller keeps that process alive for as long as it needs the database.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_servers: dict[str, Any] = {}


def pg8000_url_for_socket_dir(data_dir: Path, database: str = "postgres") -> str:
    return f"postgresql+pg8000://postgres@/{database}?unix_sock={data_dir}/.s.PGSQL.5432"


def start_embedded(data_dir: Path, cleanup_mode: str = "stop") -> str:
    """Start (or reuse) an embedded server in data_dir; return a SQLAlchemy URL for it."""
    import pgserver

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = str(data_dir)
    if key not in _servers:
        _servers[key] = pgserver.get_server(data_dir, cleanup_mode=cleanup_mode)
    return pg8000_url_for_socket_dir(data_dir)


def database_url(data_dir: Path, cleanup_mode: str = "stop") -> str:
    """DATABASE_URL when set (any PostgreSQL), else the embedded server's URL."""
    return os.environ.get("DATABASE_URL") or start_embedded(data_dir, cleanup_mode)


def create_database(admin_url: str, name: str) -> str:
    """Create an empty database next to admin_url's; return its URL."""
    from sqlalchemy import create_engine, make_url, text

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)
