"""Section 3: deep history. A conversation with 1,000,000 messages vs one with 1,000, handlers
in-process: the newest page, a page from the middle by cursor (before=500000 vs before=500), and
the context window (GET /conversations/{id}/context). Goal: deep <= 1.2 x flat.

The two conversations live in the cached bench database (.local/bench-db): generated once with
INSERT ... SELECT generate_series (a minute or two), found again by their fixed ids afterwards.
"""

from __future__ import annotations

import time
import uuid

from bench.common import (
    Context,
    Row,
    fill_messages,
    http_event,
    interleaved,
    make_client,
    make_conversation,
    make_user,
    token_for,
    use_database,
)

NS = uuid.UUID("6f1f7c39-3a51-4d0e-9a0b-6b2d3c4e5f60")
CLIENT_ID = uuid.uuid5(NS, "client")
USER_ID = uuid.uuid5(NS, "user")
DEEP_ID = uuid.uuid5(NS, "deep")
FLAT_ID = uuid.uuid5(NS, "flat")
DEEP, FLAT = 1_000_000, 1_000


def ensure_data() -> tuple[str, float | None]:
    """(token, seconds spent generating or None when the cached rows were reused)."""
    from sqlalchemy import text

    from bench.common import Fixture
    from bitworks.db import get_engine

    with get_engine().connect() as conn:
        seqs = dict(conn.execute(text("SELECT id, last_seq FROM conversations WHERE id IN (:a, :b)"), {"a": DEEP_ID, "b": FLAT_ID}).all())
    if seqs.get(DEEP_ID) == DEEP and seqs.get(FLAT_ID) == FLAT:
        return token_for(USER_ID), None
    t0 = time.monotonic()
    with get_engine().begin() as conn:
        conn.execute(text("DELETE FROM clients WHERE id = :id"), {"id": CLIENT_ID})
    make_client("bench-deep", CLIENT_ID)
    fx: Fixture = make_user(CLIENT_ID, "deep@bench.test", user_id=USER_ID)
    make_conversation(fx, FLAT_ID, "flat")
    make_conversation(fx, DEEP_ID, "deep")
    fill_messages(FLAT_ID, FLAT)
    fill_messages(DEEP_ID, DEEP)
    return fx.token, time.monotonic() - t0


def run(db_url: str, n: int = 200, budget_s: float = 12.0) -> tuple[list[Row], list[str]]:
    from tools.template import load_handler

    use_database(db_url, DB_POOL_SIZE="1")
    token, built = ensure_data()
    list_h = load_handler("ListMessagesFunction")
    ctx_h = load_handler("GetContextFunction")
    mroute = "/conversations/{conversation_id}/messages"
    croute = "/conversations/{conversation_id}/context"

    def call(handler, method_path: str, route: str, conv: uuid.UUID, query: dict[str, str] | None = None):
        ev = http_event("GET", method_path.format(conv), route, token=token, path_params={"conversation_id": str(conv)}, query=query)
        c = Context()

        def fn() -> None:
            r = handler(ev, c)
            assert r["statusCode"] == 200, r

        return fn

    cases = [
        ("newest page (50)", list_h, "/conversations/{}/messages", mroute, None, None),
        (
            "middle page by cursor (before=500000 vs before=500)",
            list_h,
            "/conversations/{}/messages",
            mroute,
            {"before": str(DEEP // 2)},
            {"before": str(FLAT // 2)},
        ),
        ("context window (GET context, 10 messages)", ctx_h, "/conversations/{}/context", croute, None, None),
    ]
    rows = []
    for label, h, path, route, q_deep, q_flat in cases:
        res = interleaved({"deep": call(h, path, route, DEEP_ID, q_deep), "flat": call(h, path, route, FLAT_ID, q_flat)}, n, budget_s)
        rows.append(
            Row(
                "3 deep history",
                f"{label}: 1,000,000 vs 1,000 messages",
                res["deep"],
                res["flat"],
                goal=1.2,
                floor_label="same handler, 1,000-message conversation",
                note=f"n={len(res['deep'])} interleaved pairs",
            )
        )
    note = (
        "Deep history data: reused from the cached bench database (.local/bench-db)."
        if built is None
        else f"Deep history data: generated this run in {built:.0f} s and cached in .local/bench-db for later runs."
    )
    return rows, [note]
