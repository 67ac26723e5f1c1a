"""Scheduled every minute: fails expired turns (a callback that never came, a lost dispatch),
starts stalled queues, removes connections past API Gateway's limits, purges old counters and tickets."""

from __future__ import annotations

from typing import Any

from bitworks.api import logger
from bitworks.services import chat


def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    counts = chat.sweep()
    logger.info("sweep done", extra=counts)
    return counts
