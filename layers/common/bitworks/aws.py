"""Lazily created boto3 clients, one per service per container (boto3 is imported on first use).

Endpoints come from boto3's own environment variables (AWS_ENDPOINT_URL_<SERVICE>), which the
local emulator and the tests set; in AWS they are unset and the regional endpoints apply.
"""

from __future__ import annotations

import threading
from typing import Any

_clients: dict[tuple[str, str | None], Any] = {}
_lock = threading.Lock()


def client(service: str, endpoint_url: str | None = None) -> Any:
    key = (service, endpoint_url)
    found = _clients.get(key)
    if found is not None:
        return found
    with _lock:
        found = _clients.get(key)
        if found is None:
            import boto3
            from botocore.config import Config

            from bitworks.config import get_settings

            config = Config(
                connect_timeout=2,
                read_timeout=10,
                retries={"max_attempts": 3, "mode": "standard"},
                max_pool_connections=32,
            )
            found = boto3.session.Session().client(
                service,
                region_name=get_settings().aws_region,
                endpoint_url=endpoint_url,
                config=config,
            )
            _clients[key] = found
    return found


def reset_clients() -> None:
    """For tests: forget clients so new endpoint variables take effect."""
    with _lock:
        _clients.clear()
