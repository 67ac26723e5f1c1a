"""The Alembic history builds the schema from nothing, goes down and up again, and matches the models."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine, inspect


@pytest.fixture
def scratch_url(database_url):
    from tools.localdb import create_database

    url = create_database(database_url, f"bitworks_scratch_{os.getpid()}")
    yield url
    from sqlalchemy import text

    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "bitworks_scratch_{os.getpid()}" WITH (FORCE)'))
    engine.dispose()


def test_upgrade_downgrade_upgrade_and_no_drift(scratch_url):
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from bitworks.migrate import alembic_config, code_heads, upgrade
    from bitworks.models import Base

    config = alembic_config(scratch_url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    engine = create_engine(scratch_url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    command.upgrade(config, "head")
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"

    assert upgrade(engine) == "current"
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    assert upgrade(engine) == "ahead"  # rollback: database newer than the code is success
    assert code_heads()
    engine.dispose()
