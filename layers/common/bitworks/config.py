"""Settings, read once from the environment and validated.

A missing or malformed variable raises ConfigError with one line naming the variable, so a cold
start (or `make dev`) fails with a readable message instead of a traceback from SQLAlchemy.

Plain dataclass parsing, not pydantic: every function reads its settings on its first request,
and pydantic's model machinery costs ~40 ms of import that routes without a request body (GETs,
DELETEs, the WebSocket handlers) otherwise never pay.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

# field name -> environment variable
_ENV = {
    "stage": "STAGE",
    "database_url": "DATABASE_URL",
    "db_secret_arn": "DB_SECRET_ARN",
    "db_host": "DB_HOST",
    "db_name": "DB_NAME",
    "db_ssl_ca_file": "DB_SSL_CA_FILE",
    "db_proxy": "DB_PROXY",
    "db_pool_size": "DB_POOL_SIZE",
    "db_ping_after_seconds": "DB_PING_AFTER_SECONDS",
    "jwt_secret": "JWT_SECRET",
    "jwt_secret_arn": "JWT_SECRET_ARN",
    "jwt_issuer": "JWT_ISSUER",
    "jwt_audience": "JWT_AUDIENCE",
    "access_token_ttl": "ACCESS_TOKEN_TTL",
    "scrypt_n": "PASSWORD_SCRYPT_N",
    "n8n_default_webhook_url": "N8N_WEBHOOK_URL",
    "n8n_connect_timeout": "N8N_CONNECT_TIMEOUT",
    "n8n_read_timeout": "N8N_READ_TIMEOUT",
    "n8n_max_attempts": "N8N_MAX_ATTEMPTS",
    "n8n_backoff_base": "N8N_BACKOFF_BASE",
    "reply_token_ttl": "REPLY_TOKEN_TTL",
    "public_api_url": "PUBLIC_API_URL",
    "dispatch_function_name": "DISPATCH_FUNCTION_NAME",
    "import_function_name": "IMPORT_FUNCTION_NAME",
    "websocket_api_id": "WEBSOCKET_API_ID",
    "websocket_stage": "WEBSOCKET_STAGE",
    "ws_management_endpoint": "WS_MANAGEMENT_ENDPOINT",
    "aws_region": "AWS_REGION",
    "login_max_failures": "LOGIN_MAX_FAILURES",
    "login_ip_max_failures": "LOGIN_IP_MAX_FAILURES",
    "default_message_rate": "DEFAULT_MESSAGE_RATE",
}


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message names the variable."""


class SecretStr:
    """A secret that does not print itself (in logs, reprs or tracebacks)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretStr('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class _Invalid(ValueError):
    pass


def _bounded(kind: type, low: float | None = None, high: float | None = None, above: float | None = None) -> Any:
    def parse(raw: str) -> Any:
        try:
            value = kind(raw)
        except ValueError:
            raise _Invalid(f"must be {'an integer' if kind is int else 'a number'}") from None
        if above is not None and not value > above:
            raise _Invalid(f"must be greater than {above}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise _Invalid(f"must be from {low} to {high}")
        return value

    return parse


def _boolean(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise _Invalid("must be true or false")


def _database_url(raw: str) -> str:
    if not raw.startswith(("postgresql://", "postgresql+pg8000://", "postgres://")):
        raise _Invalid("must start with postgresql:// (Postgres only)")
    return raw


def _jwt_secret(raw: str) -> SecretStr:
    if len(raw.encode()) < 32:
        raise _Invalid("must be at least 32 bytes (HS256)")
    return SecretStr(raw)


def _scrypt_n(raw: str) -> int:
    value = int(_bounded(int, 2**4, 2**17)(raw))
    if value & (value - 1):
        raise _Invalid("must be a power of two")
    return value


# Fields whose environment value is not a plain string.
_PARSERS: dict[str, Any] = {
    "database_url": _database_url,
    "db_proxy": _boolean,
    "db_pool_size": _bounded(int, 1, 50),
    "db_ping_after_seconds": _bounded(float, 0, 3600),
    "jwt_secret": _jwt_secret,
    "access_token_ttl": _bounded(int, 60, 86400 * 7),
    "scrypt_n": _scrypt_n,
    "n8n_connect_timeout": _bounded(float, high=30, above=0),
    "n8n_read_timeout": _bounded(float, high=900, above=0),
    "n8n_max_attempts": _bounded(int, 1, 10),
    "n8n_backoff_base": _bounded(float, 0, 30),
    "reply_token_ttl": _bounded(int, 5, 3600),
    "login_max_failures": _bounded(int, 1, 1000),
    "login_ip_max_failures": _bounded(int, 1, 100000),
    "default_message_rate": _bounded(int, 1, 10000),
}


@dataclass(frozen=True)
class Settings:
    stage: str = "local"
    database_url: str | None = None
    db_secret_arn: str | None = None
    db_host: str | None = None  # overrides the secret's host (e.g. the RDS Proxy endpoint)
    db_name: str | None = None
    db_ssl_ca_file: str | None = None
    db_proxy: bool = False
    db_pool_size: int = 1
    # A pooled connection idle longer than this gets a SELECT 1 before use (see bitworks.db).
    db_ping_after_seconds: float = 30.0
    jwt_secret: SecretStr | None = None
    jwt_secret_arn: str | None = None
    jwt_issuer: str = "bitworks-message"
    jwt_audience: str = "bitworks-message-api"
    access_token_ttl: int = 3600
    # OWASP scrypt: N=2^14, r=8, p=5 (16 MiB). Lower only outside production (tests).
    scrypt_n: int = 2**14
    n8n_default_webhook_url: str | None = None
    n8n_connect_timeout: float = 3.05
    n8n_read_timeout: float = 25.0
    n8n_max_attempts: int = 3
    n8n_backoff_base: float = 0.5
    reply_token_ttl: int = 120
    public_api_url: str | None = None
    dispatch_function_name: str | None = None
    import_function_name: str | None = None
    websocket_api_id: str | None = None
    websocket_stage: str = "prod"
    ws_management_endpoint: str | None = None
    aws_region: str = "us-east-1"
    login_max_failures: int = 5
    login_ip_max_failures: int = 50
    default_message_rate: int = 20

    def __post_init__(self) -> None:
        if not self.database_url and not self.db_secret_arn:
            raise ConfigError("configuration error: DATABASE_URL or DB_SECRET_ARN: one of them must be set")
        if self.jwt_secret is None and not self.jwt_secret_arn:
            raise ConfigError("configuration error: JWT_SECRET or JWT_SECRET_ARN: one of them must be set")
        if self.stage == "prod" and self.scrypt_n < 2**14:
            raise ConfigError("configuration error: PASSWORD_SCRYPT_N: must be at least 16384 in prod")


_FIELDS = frozenset(f.name for f in fields(Settings))
assert _FIELDS == set(_ENV), "every setting has exactly one environment variable"


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, var in _ENV.items():
        raw = env.get(var)
        if raw is None or raw == "":
            continue
        parse = _PARSERS.get(name)
        try:
            values[name] = parse(raw) if parse else raw
        except _Invalid as exc:
            raise ConfigError(f"configuration error: {var}: {exc}") from None
    return Settings(**values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
