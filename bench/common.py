"""Shared pieces of the product benchmarks: paths, statistics, the bench database, fixtures, events.

The bench database lives in an embedded PostgreSQL under .local/bench-db (git-ignored) and is kept
between runs: the 1,000,000-message conversation of the deep-history bench takes a minute or two
to generate, so it is built once. Per-run rows belong to clients whose slug starts with
"bench-run-" and are deleted (cascade) at the start of each run.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LAYER = ROOT / "layers" / "common"
BENCH_DIR = ROOT / ".local" / "bench-db"
RESULTS = ROOT / "bench" / "results"
JWT_SECRET = "bench-secret-" + "b" * 40
DB_NAME = "bitworks_bench"
for _p in (ROOT, LAYER):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

# Settings for in-process handlers (and the children of the cold-init bench).
BASE_ENV = {
    "STAGE": "bench",
    "JWT_SECRET": JWT_SECRET,
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "DISPATCH_FUNCTION_NAME": "DispatchFunction",
    "WEBSOCKET_API_ID": "wsbench000",
    "WEBSOCKET_STAGE": "prod",
    "PUBLIC_API_URL": "http://127.0.0.1:9",
}


# --------------------------------------------------------------------------- statistics
def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(0.95 * len(s) + 0.5) - 1))]


@dataclass
class Row:
    """One line of the results table."""

    section: str
    metric: str
    subject: list[float] = field(default_factory=list)  # ms (or MB for memory)
    floor: list[float] | None = None
    goal: float | None = None  # max ratio subject/floor (or max value when floor is None and unit MB)
    unit: str = "ms"
    note: str = ""
    floor_label: str = ""
    value_goal: bool = False  # goal applies to the subject median itself, not to a ratio

    paired_ratio: float | None = None  # when set: median of per-sample ratios against adjacent floor samples

    @property
    def ratio(self) -> float | None:
        if self.paired_ratio is not None:
            return self.paired_ratio
        if not self.floor:
            return None
        f = median(self.floor)
        return median(self.subject) / f if f else None

    @property
    def passed(self) -> bool | None:
        if self.goal is None:
            return None
        if self.value_goal:
            return median(self.subject) <= self.goal
        r = self.ratio
        return None if r is None else r <= self.goal


# --------------------------------------------------------------------------- environment and DB
_admin_url: str | None = None


def admin_url() -> str:
    """The bench PostgreSQL server (embedded, kept under .local/bench-db), or BENCH_DATABASE_URL."""
    global _admin_url
    if _admin_url is None:
        given = os.environ.get("BENCH_DATABASE_URL")
        if given:
            _admin_url = given
        else:
            from tools.localdb import start_embedded

            _admin_url = start_embedded(BENCH_DIR / "pgdata")
    return _admin_url


def bench_db_url() -> str:
    """The bench database (created once, migrated every run: a no-op at head)."""
    from sqlalchemy import create_engine, make_url, text

    admin = admin_url()
    url = make_url(admin).set(database=DB_NAME).render_as_string(hide_password=False)
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": DB_NAME}).first() is None:
            conn.execute(text(f'CREATE DATABASE "{DB_NAME}"'))
    engine.dispose()
    return url


def use_database(url: str, **extra: str) -> None:
    """Point the in-process layer at `url` (settings and engine are module-level caches)."""
    os.environ.update(BASE_ENV)
    os.environ.update(extra)
    os.environ["DATABASE_URL"] = url
    os.environ.pop("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", None)
    from bitworks.aws import reset_clients
    from bitworks.config import get_settings
    from bitworks.db import dispose_engine

    get_settings.cache_clear()
    dispose_engine()
    reset_clients()


def migrate(url: str) -> None:
    from sqlalchemy import create_engine

    from bitworks.migrate import upgrade

    engine = create_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def reset_run_rows() -> None:
    from sqlalchemy import text

    from bitworks.db import get_engine

    with get_engine().begin() as conn:
        conn.execute(text("DELETE FROM clients WHERE slug LIKE 'bench-run-%'"))
        conn.execute(text("DELETE FROM rate_limits WHERE key LIKE 'msg:user:%'"))


def pg8000_connect(url: str) -> Any:
    """A raw pg8000 DB-API connection to a SQLAlchemy pg8000 URL (unix socket or TCP)."""
    import pg8000.dbapi
    from sqlalchemy import make_url

    u = make_url(url)
    kwargs: dict[str, Any] = {"user": u.username or "postgres", "database": u.database, "password": u.password}
    if "unix_sock" in u.query:
        kwargs["unix_sock"] = u.query["unix_sock"]
    else:
        kwargs.update(host=u.host or "127.0.0.1", port=u.port or 5432)
    return pg8000.dbapi.connect(**kwargs)


# --------------------------------------------------------------------------- fixtures
@dataclass
class Fixture:
    client_id: uuid.UUID
    user_id: uuid.UUID
    token: str
    conversation_id: uuid.UUID | None = None


def make_client(slug: str, client_id: uuid.UUID | None = None, n8n_url: str | None = None) -> uuid.UUID:
    from bitworks.auth import new_secret
    from bitworks.db import session_scope
    from bitworks.models import Client

    with session_scope() as s:
        row = Client(
            id=client_id or uuid.uuid4(),
            name=slug,
            slug=slug,
            signing_secret=new_secret(),
            allow_signup=False,
            allowed_origins=[],
            n8n_webhook_url=n8n_url,
            settings={"message_rate_per_minute": 1_000_000},
        )
        s.add(row)
        s.flush()
        return row.id


def make_user(
    client_id: uuid.UUID, email: str, password: str = "bench password 1", user_id: uuid.UUID | None = None, role: str = "user"
) -> Fixture:
    from bitworks.auth import hash_password, issue_access_token
    from bitworks.db import session_scope
    from bitworks.models import User

    with session_scope() as s:
        row = User(id=user_id or uuid.uuid4(), client_id=client_id, email=email, password_hash=hash_password(password), role=role)
        s.add(row)
        s.flush()
        s.refresh(row)
        token = issue_access_token(row.id, row.client_id, row.role, row.token_version)[0]
        return Fixture(client_id, row.id, token)


def token_for(user_id: uuid.UUID) -> str:
    from bitworks.auth import issue_access_token
    from bitworks.db import session_scope
    from bitworks.models import User

    with session_scope() as s:
        row = s.get(User, user_id)
        assert row is not None
        return issue_access_token(row.id, row.client_id, row.role, row.token_version)[0]


def make_conversation(fx: Fixture, conversation_id: uuid.UUID | None = None, title: str = "bench") -> uuid.UUID:
    from bitworks.db import session_scope
    from bitworks.models import Conversation

    with session_scope() as s:
        row = Conversation(id=conversation_id or uuid.uuid4(), client_id=fx.client_id, user_id=fx.user_id, title=title)
        s.add(row)
        s.flush()
        return row.id


def fill_messages(conversation_id: uuid.UUID, count: int, batch: int = 200_000) -> None:
    """INSERT ... SELECT generate_series: alternating user/assistant messages seq 1..count."""
    from sqlalchemy import create_engine, text

    engine = create_engine(os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+pg8000://", 1))  # no socket timeout

    def get_engine() -> Any:
        return engine

    done = 0
    while done < count:
        n = min(batch, count - done)
        with get_engine().begin() as conn:
            conn.execute(
                text(
                    """
                    INSERT INTO messages (id, conversation_id, seq, role, content, timestamp, status, metadata)
                    SELECT gen_random_uuid(), :cid, g,
                           CASE WHEN mod(g, 2) = 1 THEN 'user' ELSE 'assistant' END,
                           'bench message number ' || g || ': lorem ipsum dolor sit amet, consectetur adipiscing elit',
                           now() - make_interval(secs => CAST(:count AS bigint) - g),
                           CASE WHEN mod(g, 2) = 1 THEN 'replied' ELSE 'sent' END,
                           '{}'::jsonb
                    FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) AS g
                    """
                ),
                {"cid": conversation_id, "lo": done + 1, "hi": done + n, "count": count},
            )
            conn.execute(text("UPDATE conversations SET last_seq = :s WHERE id = :cid"), {"s": done + n, "cid": conversation_id})
        done += n
    with get_engine().connect() as conn:
        conn.execute(text("ANALYZE messages"))
        conn.commit()
    engine.dispose()


# --------------------------------------------------------------------------- events
def http_event(
    method: str,
    path: str,
    route: str,
    *,
    token: str | None = None,
    body: Any = None,
    path_params: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A payload-2.0 event, shaped like API Gateway's."""
    from urllib.parse import urlencode

    headers = {"content-type": "application/json", "host": "api.bench.test", "user-agent": "bench"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {route}",
        "rawPath": path,
        "rawQueryString": urlencode(query or {}),
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "benchapi00",
            "domainName": "api.bench.test",
            "domainPrefix": "api",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"},
            "requestId": str(uuid.uuid4()),
            "routeKey": f"{method} {route}",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = dict(query)
    if path_params:
        event["pathParameters"] = dict(path_params)
    if body is not None:
        event["body"] = json.dumps(body)
    return event


class Context:
    def __init__(self, name: str = "bench") -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 256
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + 10

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def interleaved(pairs: dict[str, Callable[[], Any]], n: int, budget_s: float, warmup: int = 5) -> dict[str, list[float]]:
    """Run each callable in turn, n rounds (bounded by budget_s), after `warmup` rounds; ms per call."""
    out: dict[str, list[float]] = {k: [] for k in pairs}
    for _ in range(warmup):
        for fn in pairs.values():
            fn()
    deadline = time.monotonic() + budget_s
    for _ in range(n):
        for key, fn in pairs.items():
            t0 = time.perf_counter()
            fn()
            out[key].append((time.perf_counter() - t0) * 1000)
        if time.monotonic() > deadline:
            break
    return out
