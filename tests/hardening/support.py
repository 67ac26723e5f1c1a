"""Shared helpers of the hardening suites: figures (printed and written to
tests/artifacts/reliability.json at the end of the run), the registry of every secret the run
created (grepped out of all logs at the end), HTTP and WebSocket helpers for the emulator."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import requests

FIGURES: dict[str, dict[str, Any]] = {}
SECRETS: set[str] = set()
_lock = threading.Lock()


def record(suite: str, **values: Any) -> None:
    with _lock:
        FIGURES.setdefault(suite, {}).update(values)


def bump(suite: str, key: str, amount: int = 1) -> None:
    with _lock:
        section = FIGURES.setdefault(suite, {})
        section[key] = section.get(key, 0) + amount


def secret(value: Any) -> Any:
    """Remember a secret (token, ticket, key...) so the log check can look for it."""
    if isinstance(value, str) and len(value) >= 12:
        with _lock:
            SECRETS.add(value)
    return value


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(interval)


async def async_wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        await asyncio.sleep(interval)


class Http:
    """requests against the emulator's HTTP API; registers tokens it sees."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()

    def __call__(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {secret(token)}"
        kwargs.setdefault("timeout", 60)
        response = self.session.request(method, self.base + path, headers=headers, **kwargs)
        try:
            body = response.json()
        except ValueError:
            return response
        if isinstance(body, dict):
            for key in ("access_token", "ticket", "signing_secret", "key", "api_key"):
                secret(body.get(key))
            client = body.get("client")
            if isinstance(client, dict):
                secret(client.get("signing_secret"))
        return response

    def ticket(self, token: str) -> str:
        r = self("POST", "/auth/ws-ticket", token)
        assert r.status_code == 200, r.text
        return secret(r.json()["ticket"])


def tenant(
    factory: Any,
    *,
    n8n_url: str | None = None,
    users: int = 1,
    settings: dict[str, Any] | None = None,
    auth_header: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """A client with an admin and `users` users, tokens issued (and registered as secrets)."""
    extra: dict[str, Any] = {}
    if n8n_url:
        extra["n8n_webhook_url"] = n8n_url
    if settings is not None:
        extra["settings"] = settings
    if auth_header:
        extra["n8n_auth_header_name"], extra["n8n_auth_header_value"] = auth_header
        secret(auth_header[1])
    client = factory.client(**extra)
    secret(client.signing_secret)
    admin = factory.user(client, "admin")
    members = [factory.user(client, "user") for _ in range(users)]
    return {
        "client": client,
        "admin": admin,
        "admin_token": secret(factory.token(admin)),
        "users": members,
        "tokens": [secret(factory.token(u)) for u in members],
    }


def conversation(http: Http, token: str, title: str = "hardening") -> str:
    r = http("POST", "/conversations", token, json={"title": title})
    assert r.status_code == 201, r.text
    return str(r.json()["conversation"]["id"])


def messages_of(engine: Any, conversation_id: str) -> list[dict[str, Any]]:
    from sqlalchemy import text

    with engine.connect() as conn:
        rows = (
            conn.execute(
                text("SELECT id, seq, role, status, in_reply_to, metadata, content FROM messages WHERE conversation_id = :c ORDER BY seq"),
                {"c": uuid.UUID(conversation_id)},
            )
            .mappings()
            .all()
        )
    return [dict(r) for r in rows]


def turn_state(engine: Any, conversation_id: str) -> Any:
    from sqlalchemy import text

    with engine.connect() as conn:
        return conn.execute(
            text("SELECT active_message_id, turn_id FROM conversations WHERE id = :c"), {"c": uuid.UUID(conversation_id)}
        ).first()


def consistency(engine: Any, conversation_id: str) -> list[str]:
    """Every user message replied (exactly one reply, after it), failed (no reply) or pending
    with a turn that covers it; seq strictly increasing. Returns the problems found."""
    rows = messages_of(engine, conversation_id)
    problems = []
    seqs = [r["seq"] for r in rows]
    if seqs != sorted(set(seqs)):
        problems.append(f"seq not strictly increasing: {seqs}")
    by_id = {r["id"]: r for r in rows}
    replies: dict[Any, list[dict[str, Any]]] = {}
    for r in rows:
        if r["role"] == "assistant" and r["in_reply_to"] is not None:
            replies.setdefault(r["in_reply_to"], []).append(r)
    active = turn_state(engine, conversation_id)
    pending_ids = [r["id"] for r in rows if r["role"] == "user" and r["status"] == "pending"]
    for r in rows:
        if r["role"] != "user":
            continue
        got = replies.get(r["id"], [])
        if r["status"] == "replied":
            if len(got) != 1:
                problems.append(f"message {r['seq']} replied with {len(got)} replies")
            elif got[0]["seq"] <= r["seq"]:
                problems.append(f"reply of {r['seq']} has seq {got[0]['seq']}")
        elif r["status"] == "failed":
            if got:
                problems.append(f"failed message {r['seq']} has a reply")
        elif r["status"] == "pending":
            if got:
                problems.append(f"pending message {r['seq']} has a reply")
            if active is None or active.active_message_id is None:
                problems.append(f"pending message {r['seq']} without an active turn")
            elif active.active_message_id not in pending_ids:
                problems.append("active turn names a message that is not pending")
    for parent in replies:
        if parent not in by_id:
            problems.append("reply to a message that does not exist")
    return problems


def stats(aws_url: str) -> dict[str, Any]:
    return requests.get(aws_url + "/_emulator/stats", timeout=30).json()


def loads(text: str) -> Any:
    return json.loads(text)
