"""Settings, read once from the environment and validated with pydantic.

A missing or malformed variable raises ConfigError with one line naming the variable, so a cold
start (or `make dev`) fails with a readable message instead of a traceback from SQLAlchemy.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator

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


class Settings(BaseModel):
    model_config = {"frozen": True}

    stage: str = "local"
    database_url: str | None = None
    db_secret_arn: str | None = None
    db_host: str | None = None  # overrides the secret's host (e.g. the RDS Proxy endpoint)
    db_name: str | None = None
    db_ssl_ca_file: str | None = None
    db_proxy: bool = False
    db_pool_size: int = Field(1, ge=1, le=50)
    # A pooled connection idle longer than this gets a SELECT 1 before use (see bitworks.db).
    db_ping_after_seconds: float = Field(30.0, ge=0, le=3600)
    jwt_secret: SecretStr | None = None
    jwt_secret_arn: str | None = None
    jwt_issuer: str = "bitworks-message"
    jwt_audience: str = "bitworks-message-api"
    access_token_ttl: int = Field(3600, ge=60, le=86400 * 7)
    # OWASP scrypt: N=2^14, r=8, p=5 (16 MiB). Lower only outside production (tests).
    scrypt_n: int = Field(2**14, ge=2**4, le=2**17)
    n8n_default_webhook_url: str | None = None
    n8n_connect_timeout: float = Field(3.05, gt=0, le=30)
    n8n_read_timeout: float = Field(25.0, gt=0, le=900)
    n8n_max_attempts: int = Field(3, ge=1, le=10)
    n8n_backoff_base: float = Field(0.5, ge=0, le=30)
    reply_token_ttl: int = Field(120, ge=5, le=3600)
    public_api_url: str | None = None
    dispatch_function_name: str | None = None
    import_function_name: str | None = None
    websocket_api_id: str | None = None
    websocket_stage: str = "prod"
    ws_management_endpoint: str | None = None
    aws_region: str = "us-east-1"
    login_max_failures: int = Field(5, ge=1, le=1000)
    login_ip_max_failures: int = Field(50, ge=1, le=100000)
    default_message_rate: int = Field(20, ge=1, le=10000)

    @field_validator("database_url")
    @classmethod
    def _db_url_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("postgresql://", "postgresql+pg8000://", "postgres://")):
            raise ValueError("must start with postgresql:// (Postgres only)")
        return value or None

    @field_validator("jwt_secret")
    @classmethod
    def _jwt_secret_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("must be at least 32 bytes (HS256)")
        return value

    @field_validator("scrypt_n")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError("must be a power of two")
        return value

    @model_validator(mode="after")
    def _sources(self) -> Settings:
        if not self.database_url and not self.db_secret_arn:
            raise ValueError("DATABASE_URL or DB_SECRET_ARN: one of them must be set")
        if self.jwt_secret is None and not self.jwt_secret_arn:
            raise ValueError("JWT_SECRET or JWT_SECRET_ARN: one of them must be set")
        if self.stage == "prod" and self.scrypt_n < 2**14:
            raise ValueError("PASSWORD_SCRYPT_N: must be at least 16384 in prod")
        return self


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    name = _ENV.get(field, field)
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{name}: {message}" if name else message


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    for field, var in _ENV.items():
        value = env.get(var)
        if value is not None and value != "":
            raw[field] = value
    try:
        return Settings(**raw)
    except ValidationError as exc:
        raise ConfigError(f"configuration error: {_describe(exc)}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
