"""index unpushed replies (the sweeper re-pushes replies whose push failed)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 08:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_messages_unpushed_replies",
        "messages",
        ["timestamp"],
        unique=False,
        postgresql_where=sa.text("role = 'assistant' AND in_reply_to IS NOT NULL AND NOT (metadata ? 'pushed')"),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_unpushed_replies", table_name="messages")
