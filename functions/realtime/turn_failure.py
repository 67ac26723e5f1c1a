"""Failure destination of the dispatch Lambda (retries exhausted or event too old).

The event is AWS's destination record: {"requestContext": {"condition", "functionArn", ...},
"requestPayload": {"message_id", "turn_id"}, "responsePayload": {...}}. The turn fails with
upstream_error if it is still the active one and the next pending message starts; the next
dispatch is invoked on the function named in functionArn (no template reference: cycle)."""

from __future__ import annotations

import uuid
from typing import Any

from bitworks.api import logger
from bitworks.services import chat


def _function_name(arn: Any) -> str | None:
    """arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER] -> the unqualified ARN."""
    if not isinstance(arn, str) or not arn:
        return None
    parts = arn.split(":")
    if len(parts) > 7 and parts[5] == "function":
        parts = parts[:7]
    return ":".join(parts)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request_context = event.get("requestContext") or {}
    payload = event.get("requestPayload") or {}
    try:
        message_id = uuid.UUID(str(payload["message_id"]))
        turn_id = uuid.UUID(str(payload["turn_id"]))
    except (KeyError, TypeError, ValueError):
        logger.warning("turn failure record without message_id/turn_id ignored", extra={"condition": request_context.get("condition")})
        return {"result": "ignored"}
    result = chat.handle_dispatch_failure(message_id, turn_id, _function_name(request_context.get("functionArn")))
    logger.info(
        "dispatch failure handled", extra={"message_id": str(message_id), "condition": request_context.get("condition"), "result": result}
    )
    return {"result": result}
