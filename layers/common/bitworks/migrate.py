"""Run Alembic migrations from code (make dev, tests, the deploy-time migration function).

Never downgrades: on a CloudFormation rollback the old code runs against a newer schema, which is
fine because migrations are expand/contract; a database ahead of the code counts as success.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | None = None):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def code_heads() -> set[str]:
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def database_revisions(engine: Engine) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def upgrade(engine: Engine) -> str:
    """Upgrade to head; returns what happened ("upgraded", "current" or "ahead")."""
    from alembic import command

    current = database_revisions(engine)
    if current and not current <= known_revisions():
        return "ahead"  # rollback: the database is newer than this code
    if current == code_heads():
        return "current"
    with engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    return "upgraded"
