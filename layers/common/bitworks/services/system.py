"""Health check and CORS preflight answers."""

from __future__ import annotations

from typing import Any

from bitworks import api


def health() -> tuple[int, dict[str, str]]:
    """200 when a `SELECT 1` round-trips, else 503. Never raises: a health check must answer."""
    try:
        from sqlalchemy import text

        from bitworks.db import get_engine

        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure (config, network, auth) means "unreachable"
        api.logger.warning("health: database unreachable", exc_info=True)
        return 503, {"status": "degraded", "database": "unreachable"}
    return 200, {"status": "ok", "database": "ok"}


def preflight(event: dict[str, Any]) -> dict[str, Any]:
    """Answer any OPTIONS request, whatever its path: 204, with CORS headers only for an origin
    some client lists. Built by hand because the route is /{proxy+}, which no resolver rule maps
    to every depth of path."""
    headers = event.get("headers") or {}
    origin = headers.get("origin") if isinstance(headers.get("origin"), str) else None
    return {
        "statusCode": 204,
        "headers": {**api.SECURITY_HEADERS, **api.preflight_headers(origin)},
        "body": "",
        "isBase64Encoded": False,
    }
