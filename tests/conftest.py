"""Test harness: one real PostgreSQL per run (embedded pgserver, or DATABASE_URL), migrated once,
emptied before each test; settings for a test stage; factories and a handler caller."""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "layers" / "common"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

TEST_ENV = {
    "STAGE": "test",
    "JWT_SECRET": "test-secret-" + "x" * 40,
    "PASSWORD_SCRYPT_N": "16",  # fast hashes in tests; prod refuses < 2^14
    "DB_POOL_SIZE": "25",  # the 20-concurrent-senders test must never wait on the pool
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "N8N_BACKOFF_BASE": "0",
    "DISPATCH_FUNCTION_NAME": "DispatchFunction",
    "IMPORT_FUNCTION_NAME": "ImportWorkerFunction",
    "WEBSOCKET_API_ID": "ws12345678",
    "WEBSOCKET_STAGE": "prod",
    "PUBLIC_API_URL": "http://127.0.0.1:3000",
}
for _key, _value in TEST_ENV.items():
    os.environ.setdefault(_key, _value)
os.environ.pop("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", None)
# Read once, before any test or tool (tools.openapi sets placeholders) can touch the environment.
EXTERNAL_DATABASE_URL = os.environ.get("DATABASE_URL")


def _start_database(tmp_root: Path) -> str:
    from tools.localdb import create_database, start_embedded

    admin_url = EXTERNAL_DATABASE_URL
    if admin_url:
        from bitworks.config import load_settings
        from bitworks.db import database_url

        admin_url = database_url(load_settings({"DATABASE_URL": admin_url, "JWT_SECRET": "x" * 32}))
    else:
        admin_url = start_embedded(tmp_root / "pgdata")
    return create_database(admin_url, f"bitworks_test_{os.getpid()}")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = _start_database(tmp_path_factory.mktemp("db"))
    os.environ["DATABASE_URL"] = url
    from bitworks.config import get_settings
    from bitworks.db import dispose_engine, get_engine
    from bitworks.migrate import upgrade

    get_settings.cache_clear()
    dispose_engine()
    upgrade(get_engine())
    return url


@pytest.fixture
def db(database_url: str) -> Any:
    """A clean database for each test; yields the engine."""
    from bitworks.db import get_engine
    from tests.support.cleanup import truncate

    engine = get_engine()
    truncate(engine)
    import bitworks.api as api

    api._origin_cache.clear()
    return engine


@pytest.fixture
def lambda_context() -> Any:
    from tests.support.events import LambdaContext

    return LambdaContext()


class Api:
    """Invoke route handlers in-process with payload-2.0 events; returns (status, json, headers)."""

    def __init__(self) -> None:
        from tests.support.template import http_routes

        self.routes = http_routes()

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        raw_body: Any = None,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        source_ip: str = "198.51.100.7",
    ) -> tuple[int, Any, dict[str, str]]:
        from tests.support.events import LambdaContext, http_event
        from tests.support.template import load_handler

        route, params = self.match(method, path)
        event = http_event(
            method,
            path,
            route=route,
            path_params=params,
            body=body,
            raw_body=raw_body,
            token=token,
            query=query,
            headers=headers,
            source_ip=source_ip,
        )
        logical_id = self.routes[(method, route)]
        response = load_handler(logical_id)(event, LambdaContext(logical_id))
        text = response.get("body") or ""
        data = json.loads(text) if text else None
        return response["statusCode"], data, response.get("headers") or {}

    def match(self, method: str, path: str) -> tuple[str, dict[str, str]]:
        parts = path.split("?")[0].strip("/").split("/")
        for (m, route), _ in self.routes.items():
            if m != method:
                continue
            rparts = route.strip("/").split("/")
            if len(rparts) != len(parts) or "{proxy+}" in route:
                continue
            params = {}
            for r, p in zip(rparts, parts):
                if r.startswith("{"):
                    params[r.strip("{}")] = p
                elif r != p:
                    break
            else:
                return route, params
        for (m, route), _ in self.routes.items():
            if m == method and route.endswith("/{proxy+}") and path.startswith(route[: -len("{proxy+}")]):
                return route, {"proxy": path[len(route) - len("{proxy+}") :].lstrip("/")}
        raise KeyError(f"no route for {method} {path}")


@pytest.fixture(scope="session")
def api_client() -> Api:
    return Api()


class Factory:
    """Rows straight into the database (through the layer's services where rules apply)."""

    def __init__(self) -> None:
        self.counter = 0

    def client(self, **overrides: Any) -> Any:
        from bitworks.auth import new_secret
        from bitworks.db import session_scope
        from bitworks.models import Client

        self.counter += 1
        values = {
            "name": f"Client {self.counter}",
            "slug": f"client-{self.counter}-{uuid.uuid4().hex[:6]}",
            "signing_secret": new_secret(),
            "allow_signup": True,
            "allowed_origins": ["https://shop.example"],
        }
        values.update(overrides)
        with session_scope() as session:
            row = Client(**values)
            session.add(row)
            session.flush()
            session.refresh(row)
        return row

    def user(self, client: Any | None, role: str = "user", password: str = "correct horse battery", email: str | None = None) -> Any:
        from bitworks.auth import hash_password
        from bitworks.db import session_scope
        from bitworks.models import User

        self.counter += 1
        with session_scope() as session:
            row = User(
                client_id=None if client is None else client.id,
                email=email or f"{role}{self.counter}@example.com",
                password_hash=hash_password(password),
                role=role,
            )
            session.add(row)
            session.flush()
            session.refresh(row)
        row.password = password
        return row

    def token(self, user: Any) -> str:
        from bitworks.auth import issue_access_token

        return issue_access_token(user.id, user.client_id, user.role, user.token_version)[0]


@pytest.fixture
def factory(db: Any) -> Factory:
    return Factory()
