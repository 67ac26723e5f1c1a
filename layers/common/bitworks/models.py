"""SQLAlchemy models: the schema of record. Alembic migrations must match (tested).

No `from __future__ import annotations` here, on purpose: declarative mapping would then have to
evaluate every Mapped[...] string at import; real annotations cut this module's import by ~12 %
(median self time 73 -> 64 ms over 12 interleaved runs on a loaded host), on every cold start.
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ROLES = ("superadmin", "admin", "user")
MESSAGE_ROLES = ("user", "assistant", "system")
MESSAGE_STATUSES = ("pending", "replied", "failed", "sent")


def _uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(primary_key=True, default=uuid.uuid4, server_default=text("gen_random_uuid()"))


def _created() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Client(Base):
    __tablename__ = "clients"

    id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    slug: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    n8n_webhook_url: Mapped[str | None] = mapped_column(String(2000))
    n8n_auth_header_name: Mapped[str | None] = mapped_column(String(200))
    n8n_auth_header_value: Mapped[str | None] = mapped_column(String(2000))
    signing_secret: Mapped[str] = mapped_column(String(200), nullable=False)
    allow_signup: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    allowed_origins: Mapped[list[str]] = mapped_column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(f"role IN ({_in(ROLES)})", name="role"),
        CheckConstraint("(role = 'superadmin') = (client_id IS NULL)", name="superadmin_has_no_client"),
        # Emails are unique per client, and among superadmins (client_id NULL).
        Index("uq_users_client_email", "client_id", "email", unique=True, postgresql_where=text("client_id IS NOT NULL")),
        Index("uq_users_superadmin_email", "email", unique=True, postgresql_where=text("client_id IS NULL")),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    client_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(300), nullable=False)
    role: Mapped[str] = mapped_column(String(20), nullable=False)
    display_name: Mapped[str | None] = mapped_column(String(200))
    token_version: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class Template(Base):
    __tablename__ = "templates"
    __table_args__ = (UniqueConstraint("client_id", "name"),)

    id: Mapped[uuid.UUID] = _uuid_pk()
    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'closed')", name="status"),
        CheckConstraint("mode IN ('bot', 'human')", name="mode"),
        Index("ix_conversations_client_user_updated", "client_id", "user_id", "updated_at", "id"),
        Index("ix_conversations_client_updated", "client_id", "updated_at", "id"),
        Index("ix_conversations_turn_expires_at", "turn_expires_at", postgresql_where=text("active_message_id IS NOT NULL")),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), nullable=False)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    title: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(10), nullable=False, server_default=text("'open'"))
    mode: Mapped[str] = mapped_column(String(10), nullable=False, server_default=text("'bot'"))
    template_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("templates.id", ondelete="SET NULL"))
    # Turn state: the one user message n8n is working on (a row, not a lock).
    active_message_id: Mapped[uuid.UUID | None] = mapped_column()
    turn_id: Mapped[uuid.UUID | None] = mapped_column()
    turn_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # seq allocator: UPDATE ... SET last_seq = last_seq + 1 RETURNING serialises writers per row.
    last_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


# A reply (to a user message) whose push has not reached every socket yet (bitworks.services.chat).
UNPUSHED_REPLY = "role = 'assistant' AND in_reply_to IS NOT NULL AND NOT (metadata ? 'pushed')"


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        CheckConstraint(f"role IN ({_in(MESSAGE_ROLES)})", name="role"),
        CheckConstraint(f"status IN ({_in(MESSAGE_STATUSES)})", name="status"),
        CheckConstraint("char_length(content) BETWEEN 1 AND 16000", name="content_length"),
        # The ordered-history index: keyset pagination and the context window ride on it.
        UniqueConstraint("conversation_id", "seq"),
        Index(
            "uq_messages_conversation_client_message_id",
            "conversation_id",
            "client_message_id",
            unique=True,
            postgresql_where=text("client_message_id IS NOT NULL"),
        ),
        # At most one reply per user message, whatever retries happen.
        Index("uq_messages_in_reply_to", "in_reply_to", unique=True, postgresql_where=text("in_reply_to IS NOT NULL")),
        Index("ix_messages_pending", "conversation_id", "seq", postgresql_where=text("status = 'pending'")),
        # The sweeper's re-push of replies whose push failed: only unpushed replies are indexed.
        Index("ix_messages_unpushed_replies", "timestamp", postgresql_where=text(UNPUSHED_REPLY)),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    conversation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    role: Mapped[str] = mapped_column(String(10), nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    timestamp: Mapped[datetime] = _created()
    status: Mapped[str] = mapped_column(String(10), nullable=False)
    client_message_id: Mapped[str | None] = mapped_column(String(100))
    in_reply_to: Mapped[uuid.UUID | None] = mapped_column()
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class Context(Base):
    __tablename__ = "context"
    __table_args__ = (CheckConstraint("context_window BETWEEN 1 AND 200", name="window"),)

    id: Mapped[uuid.UUID] = _uuid_pk()
    conversation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False, unique=True)
    context_window: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("10"))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class Connection(Base):
    __tablename__ = "connections"
    __table_args__ = (Index("ix_connections_user_id", "user_id"), Index("ix_connections_last_seen_at", "last_seen_at"))

    connection_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    client_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    connected_at: Mapped[datetime] = _created()
    last_seen_at: Mapped[datetime] = _created()


class Subscription(Base):
    """An admin's connection following a conversation (human handoff)."""

    __tablename__ = "subscriptions"
    __table_args__ = (Index("ix_subscriptions_conversation_id", "conversation_id"),)

    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.connection_id", ondelete="CASCADE"), primary_key=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = _created()


class WsTicket(Base):
    """Single-use WebSocket tickets; only a hash is stored."""

    __tablename__ = "ws_tickets"
    __table_args__ = (Index("ix_ws_tickets_expires_at", "expires_at"),)

    ticket_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    token_version: Mapped[int] = mapped_column(Integer, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class RateLimit(Base):
    """Fixed-window counters (messages per user, failed logins per account and per IP)."""

    __tablename__ = "rate_limits"
    __table_args__ = (Index("ix_rate_limits_window_end", "window_end"),)

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    count: Mapped[int] = mapped_column(Integer, nullable=False)


class ImportJob(Base):
    __tablename__ = "import_jobs"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed')", name="status"),
        Index("ix_import_jobs_client_id", "client_id"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), nullable=False)
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(10), nullable=False, server_default=text("'queued'"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class ApiKey(Base):
    """Client-scoped API keys for n8n workflows; only a hash of the secret part is stored."""

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_client_id", "client_id"),)

    id: Mapped[uuid.UUID] = _uuid_pk()
    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    prefix: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    scopes: Mapped[list[str]] = mapped_column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created()
