"""Seed the local database: a superadmin, a demo client (signup allowed, local origins) with an
admin and a user. Credentials are generated once, kept in the git-ignored
.local/demo-credentials.json, and re-applied at every start (same logins every time)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

DEMO_SLUG = "demo"
LOCAL_ORIGINS = ["http://127.0.0.1:3000", "http://localhost:3000"]


def _password() -> str:
    return secrets.token_urlsafe(12)


def load_or_create_credentials(path: Path) -> dict[str, Any]:
    if path.exists():
        return dict(json.loads(path.read_text()))
    creds = {
        "client_id": None,
        "superadmin": {"email": "superadmin@bitworks.local", "password": _password()},
        "admin": {"email": "admin@demo.local", "password": _password()},
        "user": {"email": "user@demo.local", "password": _password()},
    }
    return creds


def seed(session: Session, credentials_path: Path, n8n_url: str | None, origins: list[str] | None = None) -> dict[str, Any]:
    from bitworks.auth import hash_password, new_secret, verify_password
    from bitworks.models import Client, User

    creds = load_or_create_credentials(credentials_path)
    client = session.scalars(select(Client).where(Client.slug == DEMO_SLUG)).first()
    if client is None:
        client = Client(name="Demo Shop", slug=DEMO_SLUG, signing_secret=new_secret(), allow_signup=True)
        session.add(client)
    client.allowed_origins = sorted(set(client.allowed_origins or []) | set(origins or LOCAL_ORIGINS))
    client.n8n_webhook_url = n8n_url
    session.flush()
    creds["client_id"] = str(client.id)

    for role, client_id in (("superadmin", None), ("admin", client.id), ("user", client.id)):
        entry = creds[role]
        stmt = select(User).where(User.email == entry["email"])
        stmt = stmt.where(User.client_id.is_(None)) if client_id is None else stmt.where(User.client_id == client_id)
        user = session.scalars(stmt).first()
        if user is None:
            session.add(User(client_id=client_id, email=entry["email"], password_hash=hash_password(entry["password"]), role=role))
        elif not verify_password(entry["password"], user.password_hash):
            user.password_hash = hash_password(entry["password"])
            user.token_version += 1
    session.flush()
    credentials_path.parent.mkdir(parents=True, exist_ok=True)
    credentials_path.write_text(json.dumps(creds, indent=2) + "\n")
    credentials_path.chmod(0o600)
    return creds
