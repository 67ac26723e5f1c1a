"""Sustained load through the emulator on loopback: N WebSocket clients (one user and one
conversation each) chat against the demo assistant (an instant n8n stand-in), each sending its
next message when the previous reply arrived, for a bounded time. Afterwards every user message
has exactly one reply or one failure, order is intact, no connection row outlives its socket,
and the functions' peak RSS stopped growing (1/3 of the run vs the end)."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from typing import Any

import pytest
import websockets

from tests.hardening.support import consistency, conversation, record, stats, tenant, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

CLIENTS = int(os.environ.get("HARDENING_LOAD_CLIENTS", "50"))
SECONDS = float(os.environ.get("HARDENING_LOAD_SECONDS", "120"))
MAX_MESSAGES_PER_CLIENT = 2000
WATCHED = ("WsSendMessageFunction", "DispatchFunction", "WsConnectFunction", "WsDisconnectFunction")


def _rss(aws_url: str) -> dict[str, float]:
    functions = stats(aws_url)["functions"]
    return {name: float(functions.get(name, {}).get("peak_rss_mb") or 0) for name in WATCHED}


def test_sustained_chat_load(hstack, hhttp, factory, db):
    t = tenant(factory, users=CLIENTS, settings={"message_rate_per_minute": 10000})
    conversations = [conversation(hhttp, tok, f"load {i}") for i, tok in enumerate(t["tokens"])]
    tickets = [hhttp.ticket(tok) for tok in t["tokens"]]
    before = stats(hstack.aws_url)["functions"]
    latencies: list[float] = []
    sent = {"n": 0, "failed_events": 0, "errors": []}
    marks: dict[str, Any] = {}

    async def warm(ws: Any, conv: str) -> None:
        await ws.send(json.dumps({"action": "sendMessage", "conversation_id": conv, "content": "warm-up"}))
        await wait_reply(ws, 120)

    async def wait_reply(ws: Any, timeout: float) -> str:
        async with asyncio.timeout(timeout):
            while True:
                event = json.loads(await ws.recv())
                kind = event.get("type")
                if kind == "message.created" and event["message"]["role"] == "assistant":
                    return "reply"
                if kind == "message.failed":
                    return "failed"
                if kind == "error":
                    sent["errors"].append(event)
                    return "error"

    async def chat(i: int, ws: Any, deadline: float) -> None:
        conv = conversations[i]
        for n in range(MAX_MESSAGES_PER_CLIENT):
            if time.monotonic() >= deadline:
                return
            began = time.monotonic()
            await ws.send(
                json.dumps(
                    {
                        "action": "sendMessage",
                        "conversation_id": conv,
                        "content": f"client {i} message {n}",
                        "client_message_id": f"load-{i}-{n}",
                    }
                )
            )
            sent["n"] += 1
            outcome = await wait_reply(ws, 120)
            if outcome == "reply":
                latencies.append(time.monotonic() - began)
            elif outcome == "failed":
                sent["failed_events"] += 1

    async def third_mark(deadline_third: float) -> None:
        await asyncio.sleep(max(0.0, deadline_third - time.monotonic()))
        marks["third"] = await asyncio.to_thread(_rss, hstack.aws_url)

    async def scenario() -> None:
        sockets = []
        for ticket in tickets:
            sockets.append(await websockets.connect(f"{hstack.ws_url}/?ticket={ticket}", open_timeout=120))
        # warm: every client's first turn (cold starts of the workers) before the clock starts
        await asyncio.gather(*(warm(ws, conversations[i]) for i, ws in enumerate(sockets)))
        marks["warm"] = await asyncio.to_thread(_rss, hstack.aws_url)
        start = time.monotonic()
        deadline = start + SECONDS
        await asyncio.gather(third_mark(start + SECONDS / 3), *(chat(i, ws, deadline) for i, ws in enumerate(sockets)))
        marks["elapsed"] = time.monotonic() - start
        marks["end"] = await asyncio.to_thread(_rss, hstack.aws_url)
        for ws in sockets:
            await ws.close()

    asyncio.run(scenario())
    after = stats(hstack.aws_url)["functions"]
    served = sum(f.get("invocations", 0) for f in after.values()) - sum(f.get("invocations", 0) for f in before.values())

    # no connection row outlives its socket ($disconnect ran for every close)
    from sqlalchemy import text

    def no_rows() -> bool:
        with db.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM connections")).scalar() == 0

    wait_for(no_rows, timeout=120, what="connection rows of closed sockets deleted")
    # every user message ends replied or failed, exactly once, in order
    problems, users, replies, failures, pending = [], 0, 0, 0, 0
    for conv in conversations:
        problems += consistency(db, conv)
        from tests.hardening.support import messages_of

        rows = messages_of(db, conv)
        users += sum(1 for r in rows if r["role"] == "user")
        replies += sum(1 for r in rows if r["role"] == "assistant")
        failures += sum(1 for r in rows if r["role"] == "user" and r["status"] == "failed")
        pending += sum(1 for r in rows if r["role"] == "user" and r["status"] == "pending")
    growth = {k: round(marks["end"][k] - marks["third"][k], 1) for k in WATCHED}
    lat = sorted(latencies)
    figures = {
        "clients": CLIENTS,
        "seconds": round(marks["elapsed"], 1),
        "requests_served": served,
        "messages": users,
        "replies": replies,
        "failures": failures,
        "pending_left": pending,
        "messages_lost": users - replies - failures,
        "reply_latency_p50_ms": round(statistics.median(lat) * 1000, 1) if lat else None,
        "reply_latency_p95_ms": round(lat[int(len(lat) * 0.95) - 1] * 1000, 1) if lat else None,
        "messages_per_second": round(len(lat) / marks["elapsed"], 1),
        "peak_rss_mb_at_third": marks["third"],
        "peak_rss_mb_at_end": marks["end"],
        "peak_rss_growth_mb": growth,
        "error_events": len(sent["errors"]),
    }
    record("load", **figures)
    assert not problems, problems[:10]
    assert figures["messages_lost"] == 0 and pending == 0 and failures == 0, figures
    assert not sent["errors"], sent["errors"][:3]
    assert users >= CLIENTS * 2, figures
    for name in WATCHED:  # bounded: a leak would keep raising the peak past the first third
        assert growth[name] <= max(25.0, 0.2 * marks["third"][name]), (name, growth)
