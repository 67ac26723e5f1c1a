"""OPTIONS /{proxy+}: per-client CORS preflight for every path (a plain handler, no routing)."""

from typing import Any

from bitworks.services import system


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return system.preflight(event)
