"""Asynchronous worker for POST /admin/import (invoked with {"job_id": "..."}; no retries)."""

from typing import Any

from bitworks.services import imports


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return imports.handle_event(event)
