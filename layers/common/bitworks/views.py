"""ORM rows -> JSON-ready dicts (the documented shapes). Secrets never leave through here."""

from __future__ import annotations

import re
from typing import Any

from bitworks.models import Client, Conversation, Message, Template, User

_VARIABLE = re.compile(r"{{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*}}")


def user(row: User) -> dict[str, Any]:
    return {
        "id": row.id,
        "client_id": row.client_id,
        "email": row.email,
        "role": row.role,
        "display_name": row.display_name,
        "created_at": row.created_at,
    }


def client(row: Client, signing_secret: str | None = None) -> dict[str, Any]:
    out = {
        "id": row.id,
        "name": row.name,
        "slug": row.slug,
        "n8n_webhook_url": row.n8n_webhook_url,
        "n8n_auth_header_name": row.n8n_auth_header_name,
        "has_n8n_auth_header_value": bool(row.n8n_auth_header_value),
        "has_signing_secret": bool(row.signing_secret),
        "allow_signup": row.allow_signup,
        "allowed_origins": list(row.allowed_origins or []),
        "settings": dict(row.settings or {}),
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }
    if signing_secret is not None:
        out["signing_secret"] = signing_secret  # shown once: on create and on rotation
    return out


def template_variables(content: str) -> list[str]:
    return list(dict.fromkeys(_VARIABLE.findall(content)))


def template(row: Template) -> dict[str, Any]:
    return {
        "id": row.id,
        "client_id": row.client_id,
        "name": row.name,
        "content": row.content,
        "description": row.description,
        "variables": template_variables(row.content),
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def conversation(row: Conversation) -> dict[str, Any]:
    return {
        "id": row.id,
        "client_id": row.client_id,
        "user_id": row.user_id,
        "title": row.title,
        "status": row.status,
        "mode": row.mode,
        "template_id": row.template_id,
        "active_message_id": row.active_message_id,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def message(row: Message | Any) -> dict[str, Any]:
    """A Message, or a Core row with its attribute names (services.history reads pages that way)."""
    return {
        "id": row.id,
        "conversation_id": row.conversation_id,
        "seq": row.seq,
        "role": row.role,
        "content": row.content,
        "timestamp": row.timestamp,
        "status": row.status,
        "client_message_id": row.client_message_id,
        "in_reply_to": row.in_reply_to,
        "metadata": dict(row.metadata_ or {}),
    }
