"""Section 2: warm overhead of a handler (event in -> response out, in-process) vs raw pg8000.

- GET /conversations/{id}/messages (50 of 200 messages) vs the raw query returning the same 51
  rows + json.dumps, on a warm pg8000 connection.
- POST /conversations/{id}/messages (auth, rate limit, seq allocation, insert, commit, the push
  query, and the async hand-off: a boto3 Lambda Invoke to a local stub answering 202 in its own
  process) vs the raw insert: UPDATE conversations SET last_seq = last_seq + 1 RETURNING, INSERT
  message, commit. Every call uses a fresh conversation, so every call starts a turn and invokes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

from bench.common import (
    ROOT,
    Context,
    Fixture,
    Row,
    fill_messages,
    http_event,
    interleaved,
    make_client,
    make_conversation,
    make_user,
    pg8000_connect,
    use_database,
)

LIST_SQL = (
    "SELECT id, conversation_id, seq, role, content, timestamp, status, client_message_id, in_reply_to, metadata "
    "FROM messages WHERE conversation_id = %s ORDER BY seq DESC LIMIT 51"
)
COLUMNS = ("id", "conversation_id", "seq", "role", "content", "timestamp", "status", "client_message_id", "in_reply_to", "metadata")


def start_stub() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.stub_lambda"], stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("stub ready"):
        proc.kill()
        raise RuntimeError("stub Lambda endpoint did not start")
    return proc, line.split()[-1]


def run(db_url: str, n: int = 400, budget_s: float = 25.0) -> tuple[list[Row], list[str]]:
    from tools.template import load_handler

    stub, stub_url = start_stub()
    try:
        use_database(db_url, AWS_ENDPOINT_URL_LAMBDA=stub_url, DB_POOL_SIZE="1")
        cid = make_client(f"bench-run-warm-{uuid.uuid4().hex[:8]}")
        fx: Fixture = make_user(cid, "warm@bench.test")
        conv = make_conversation(fx)
        fill_messages(conv, 200)
        raw = pg8000_connect(db_url)
        rows, notes = [], []

        # ---- list 50 messages
        list_handler = load_handler("ListMessagesFunction")
        route = "/conversations/{conversation_id}/messages"
        event = http_event("GET", f"/conversations/{conv}/messages", route, token=fx.token, path_params={"conversation_id": str(conv)})
        ctx = Context("ListMessagesFunction")

        def subject_list() -> None:
            r = list_handler(event, ctx)
            assert r["statusCode"] == 200, r

        def floor_list() -> None:
            cur = raw.cursor()
            cur.execute(LIST_SQL, (str(conv),))
            items = [dict(zip(COLUMNS, r, strict=True)) for r in cur.fetchall()]
            items = items[:50]
            items.reverse()
            json.dumps({"items": items, "next_cursor": str(items[0]["seq"])}, default=str)
            raw.commit()

        res = interleaved({"subject": subject_list, "floor": floor_list}, n, budget_s)
        rows.append(
            Row(
                "2 warm",
                "GET messages (50 of 200), in-process handler",
                res["subject"],
                res["floor"],
                goal=1.5,
                floor_label="raw pg8000 query + json.dumps",
                note=f"n={len(res['subject'])} interleaved pairs after 5 warm-up pairs",
            )
        )

        # ---- create a message (+ async hand-off)
        create_handler = load_handler("CreateMessageFunction")
        total = n + 10
        subject_convs = [make_conversation(fx, title=f"c{i}") for i in range(total)]
        floor_convs = [make_conversation(fx, title=f"f{i}") for i in range(total)]
        it_s, it_f = iter(subject_convs), iter(floor_convs)
        cctx = Context("CreateMessageFunction")
        body = {"content": "hello from the bench"}

        def subject_create() -> None:
            c = str(next(it_s))
            ev = http_event("POST", f"/conversations/{c}/messages", route, token=fx.token, body=body, path_params={"conversation_id": c})
            r = create_handler(ev, cctx)
            assert r["statusCode"] == 201, r

        def floor_create() -> None:
            c = str(next(it_f))
            cur = raw.cursor()
            cur.execute("UPDATE conversations SET last_seq = last_seq + 1, updated_at = now() WHERE id = %s RETURNING last_seq", (c,))
            seq = cur.fetchone()[0]
            cur.execute(
                "INSERT INTO messages (id, conversation_id, seq, role, content, status) VALUES (%s, %s, %s, 'user', %s, 'pending') "
                "RETURNING id, seq, timestamp",
                (str(uuid.uuid4()), c, seq, body["content"]),
            )
            cur.fetchone()
            raw.commit()

        res = interleaved({"subject": subject_create, "floor": floor_create}, n, budget_s, warmup=5)
        rows.append(
            Row(
                "2 warm",
                "POST message (insert + async invoke), in-process handler",
                res["subject"],
                res["floor"],
                goal=2.0,
                floor_label="raw pg8000 UPDATE..RETURNING + INSERT + commit",
                note=f"n={len(res['subject'])} interleaved pairs; Lambda Invoke answered 202 by a loopback stub in its own process",
            )
        )
        invokes = _count_invokes(db_url)
        notes.append(f"Warm POST: {invokes} user messages ended with an active turn (each call started a turn and invoked the dispatch).")
        raw.close()
        return rows, notes
    finally:
        stub.terminate()
        stub.wait(5)
        # Their turns were never dispatched: left alone, a sweeper run would dispatch them all later.
        from sqlalchemy import text

        from bitworks.db import get_engine

        with get_engine().begin() as conn:
            conn.execute(text("DELETE FROM clients WHERE slug LIKE 'bench-run-warm-%'"))


def _count_invokes(db_url: str) -> Any:
    from sqlalchemy import text

    from bitworks.db import get_engine

    with get_engine().connect() as conn:
        return conn.execute(
            text(
                "SELECT count(*) FROM conversations c JOIN clients k ON k.id = c.client_id "
                "WHERE k.slug LIKE 'bench-run-warm-%' AND c.active_message_id IS NOT NULL"
            )
        ).scalar()
