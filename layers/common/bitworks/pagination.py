"""Opaque keyset cursors for lists ordered by (timestamp, id). A forged cursor is a 422."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any

from bitworks.errors import ValidationFailed
from bitworks.jsonutil import iso


def encode_cursor(at: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([iso(at), str(row_id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    if cursor is None or cursor == "":
        return None
    try:
        if len(cursor) > 200:
            raise ValueError("too long")
        at, row_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        parsed = datetime.fromisoformat(str(at).replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            raise ValueError("naive")
        return parsed, uuid.UUID(str(row_id))
    except (ValueError, TypeError, json.JSONDecodeError):
        raise ValidationFailed("cursor: invalid", [{"field": "cursor", "message": "invalid cursor"}]) from None


def page(items: list[Any], limit: int, key: Any) -> dict[str, Any]:
    """items were fetched with limit + 1; the extra one only tells that more exist."""
    more = len(items) > limit
    items = items[:limit]
    next_cursor = encode_cursor(*key(items[-1])) if more and items else None
    return {"items": items, "next_cursor": next_cursor}


def keyset_desc(session: Any, stmt: Any, at_col: Any, id_col: Any, limit: int, cursor: str | None, view: Any) -> dict[str, Any]:
    """Newest first by (at_col, id_col): one indexed range scan, no OFFSET, no COUNT.

    stmt selects ORM rows; view turns a row into its JSON dict."""
    from sqlalchemy import literal, tuple_

    after = decode_cursor(cursor)
    if after is not None:
        stmt = stmt.where(tuple_(at_col, id_col) < tuple_(literal(after[0], at_col.type), literal(after[1], id_col.type)))
    rows = list(session.scalars(stmt.order_by(at_col.desc(), id_col.desc()).limit(limit + 1)))
    at_name, id_name = at_col.key, id_col.key
    result = page(rows, limit, lambda row: (getattr(row, at_name), getattr(row, id_name)))
    result["items"] = [view(row) for row in result["items"]]
    return result
