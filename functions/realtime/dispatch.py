"""Dispatch Lambda (async invoke {"message_id", "turn_id"}): one AI turn's delivery to n8n.

Idempotent: Lambda's async retries and duplicate invokes find the turn over or claimed and do
nothing. An exception here means the database failed: Lambda retries once, then sends the event
to TurnFailureFunction, which fails the turn cleanly."""

from __future__ import annotations

import uuid
from typing import Any

from bitworks.api import logger
from bitworks.services import chat


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        message_id = uuid.UUID(str(event["message_id"]))
        turn_id = uuid.UUID(str(event["turn_id"]))
    except (KeyError, TypeError, ValueError):
        logger.warning("dispatch event without message_id/turn_id ignored")
        return {"result": "ignored"}
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    result = chat.run_dispatch(
        message_id,
        turn_id,
        # The next turn is invoked on this very function (the template cannot name it here: cycle).
        function_name=getattr(context, "function_name", None),
        time_left=(lambda: remaining() / 1000) if remaining else None,
    )
    logger.info("dispatch done", extra={"message_id": str(message_id), "result": result})
    return {"result": result}
