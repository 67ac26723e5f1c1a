"""Faults injected while chatting: Postgres restarted mid-run, n8n flapping (500 / timeout /
answer) during a burst, a Management API answering 410 for half of a user's connections, and a
dispatch that crashes after storing the reply but before pushing it. Afterwards nothing is lost
or doubled: every user message is replied, failed, or pending under an active turn."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import uuid
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pytest
import websockets

from tests.hardening.support import bump, consistency, conversation, messages_of, record, tenant, wait_for
from tests.support.n8n_stub import reply_hang, reply_json

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


class ContainerDied(BaseException):
    """A hard stop (like the runtime killing the container): no `except Exception` absorbs it."""


def _settled(db, convs: list[str]) -> bool:
    return all(r["status"] != "pending" for c in convs for r in messages_of(db, c) if r["role"] == "user")


def _totals(db, convs: list[str]) -> dict[str, int]:
    out = {"messages": 0, "replied": 0, "failed": 0, "replies": 0}
    for c in convs:
        for r in messages_of(db, c):
            if r["role"] == "user":
                out["messages"] += 1
                out[r["status"]] = out.get(r["status"], 0) + 1
            elif r["role"] == "assistant":
                out["replies"] += 1
    return out


def _pg_data_dir(database_url: str) -> Path | None:
    sock = parse_qs(urlparse(database_url).query).get("unix_sock")
    return Path(unquote(sock[0])).parent if sock else None


def _pg_ctl(pg_ctl: Path, data_dir: Path) -> None:
    """pg_ctl restart as the data directory's owner (pgserver runs postgres as its own user under root)."""
    import os
    import pwd

    owner = pwd.getpwuid(data_dir.stat().st_uid)
    preexec = None
    if os.geteuid() == 0 and owner.pw_uid != 0:

        def preexec() -> None:
            os.setgid(owner.pw_gid)
            os.setuid(owner.pw_uid)

    # -l: the new postmaster logs to a file, so no pipe of ours stays open in it
    done = subprocess.run(
        [str(pg_ctl), "restart", "-D", str(data_dir), "-m", "fast", "-w", "-t", "60", "-l", str(data_dir / "restart.log")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
        preexec_fn=preexec,
        cwd="/",
    )
    assert done.returncode == 0, f"pg_ctl restart failed ({done.returncode})"


def test_postgres_restart_mid_run(hstack, hhttp, factory, db, database_url):
    import pgserver

    data_dir = _pg_data_dir(database_url)
    if data_dir is None:
        pytest.skip("DATABASE_URL points at an external server: no restart from here")
    pg_ctl = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_ctl"
    t = tenant(factory, users=3, settings={"message_rate_per_minute": 10000})
    convs = [conversation(hhttp, tok) for tok in t["tokens"]]
    for tok, conv in zip(t["tokens"], convs):  # warm the message route and the dispatch
        assert hhttp("POST", f"/conversations/{conv}/messages", tok, json={"content": "warm"}).status_code == 201
    wait_for(lambda: _settled(db, convs), 120, what="warm-up turns")
    statuses: list[int] = []
    stop = threading.Event()

    def traffic(tok: str, conv: str) -> None:
        for n in range(200):
            if stop.is_set():
                return
            try:
                statuses.append(
                    hhttp("POST", f"/conversations/{conv}/messages", tok, json={"content": f"during {n}"}, timeout=60).status_code
                )
            except Exception:
                statuses.append(-1)

    threads = [threading.Thread(target=traffic, args=(tok, conv)) for tok, conv in zip(t["tokens"], convs)]
    for th in threads:
        th.start()
    wait_for(lambda: len(statuses) >= 6, 120, what="traffic before the restart")
    _pg_ctl(pg_ctl, data_dir)
    at_restart = len(statuses)
    wait_for(lambda: len(statuses) >= at_restart + 9, 120, what="traffic after the restart")
    stop.set()
    for th in threads:
        th.join(120)
    after = statuses[at_restart + 3 :]
    assert after and all(s == 201 for s in after[-6:]), statuses  # the liveness check (bitworks.db) replaces dead connections
    # the sweeper's job for turns orphaned by the outage (dispatch retries exhausted): run it
    r = hhttp("GET", "/health")
    assert r.status_code == 200, r.text
    wait_for(lambda: _settled(db, convs), 180, what="every turn ended after the restart")
    problems = [p for c in convs for p in consistency(db, c)]
    totals = _totals(db, convs)
    record(
        "faults.postgres_restart",
        requests=len(statuses),
        answered_201=statuses.count(201),
        errors_during_restart=len([s for s in statuses if s != 201]),
        **totals,
        messages_lost=totals["messages"] - totals["replied"] - totals["failed"],
    )
    bump("faults", "faults_injected")
    assert not problems, problems
    assert totals["replies"] == totals["replied"]


def test_n8n_flapping_during_a_burst(hstack, hhttp, factory, db, n8n):
    t = tenant(factory, users=6, n8n_url=n8n.url, auth_header=("X-N8n-Key", f"n8n-key-{uuid.uuid4().hex}"))
    convs = [conversation(hhttp, tok) for tok in t["tokens"]]
    cycle = [reply_json({"error": "boom"}, 500), reply_hang(3.0), reply_json({"output": "ok"})]
    counter = {"n": 0}
    lock = threading.Lock()

    def flapping(req):
        with lock:
            counter["n"] += 1
            step = cycle[counter["n"] % 3]
        return step

    n8n.default = flapping
    try:
        first = len(n8n.requests)
        for round_ in range(3):
            for tok, conv in zip(t["tokens"], convs):
                r = hhttp("POST", f"/conversations/{conv}/messages", tok, json={"content": f"burst {round_}"})
                assert r.status_code == 201, r.text
        wait_for(lambda: _settled(db, convs), 240, what="every flapping turn ended")
    finally:
        n8n.default = lambda req: reply_json({"output": f"echo: {req.json()['message']['content']}"})
    problems = [p for c in convs for p in consistency(db, c)]
    totals = _totals(db, convs)
    assert not problems, problems
    assert totals["messages"] == 18 and totals["replied"] + totals["failed"] == 18 and totals["replies"] == totals["replied"]
    deliveries = {}
    for req in n8n.requests[first:]:
        deliveries.setdefault(req.headers.get("x-bitworks-delivery"), []).append(req)
    assert all(len(v) <= 3 for v in deliveries.values())  # bounded retries, same delivery id
    record(
        "faults.n8n_flapping",
        **totals,
        n8n_requests=len(n8n.requests) - first,
        messages_lost=totals["messages"] - totals["replied"] - totals["failed"],
    )
    bump("faults", "faults_injected")


def test_gone_connections_are_deleted_and_the_rest_receive(hstack, hhttp, factory, db):
    from sqlalchemy import text

    t = tenant(factory)
    tok, user, client = t["tokens"][0], t["users"][0], t["client"]
    conv = conversation(hhttp, tok)
    ghosts = [f"ghost-{i}-{uuid.uuid4().hex[:8]}=" for i in range(3)]  # the emulator answers 410 for these
    with db.begin() as conn:
        for g in ghosts:
            conn.execute(
                text("INSERT INTO connections (connection_id, user_id, client_id) VALUES (:c, :u, :k)"),
                {"c": g, "u": user.id, "k": client.id},
            )

    async def scenario() -> list[list[dict]]:
        sockets = [await websockets.connect(f"{hstack.ws_url}/?ticket={hhttp.ticket(tok)}") for _ in range(3)]
        await sockets[0].send(json.dumps({"action": "sendMessage", "conversation_id": conv, "content": "to all of me"}))
        received = []
        for ws in sockets:
            events = []
            async with asyncio.timeout(60):
                while not any(e.get("type") == "typing" and e.get("state") == "off" for e in events):
                    events.append(json.loads(await ws.recv()))
            received.append(events)
        for ws in sockets:
            await ws.close()
        return received

    received = asyncio.run(scenario())
    for events in received:
        assert [e["message"]["role"] for e in events if e["type"] == "message.created"] == ["user", "assistant"]
    with db.connect() as conn:
        left = conn.execute(text("SELECT count(*) FROM connections WHERE connection_id LIKE 'ghost-%'")).scalar()
    assert left == 0
    record("faults.gone_connections", live_sockets=3, gone_rows=3, gone_rows_left=left)
    bump("faults", "faults_injected")


def test_dispatch_crash_after_storing_the_reply(db, factory, api_client, n8n, monkeypatch):
    """Through the real handlers: POST message -> DispatchFunction crashes in the push after its
    commit -> Lambda's retry of the same event pushes the stored reply once, stores nothing."""
    from sqlalchemy import text

    import bitworks.realtime as realtime
    from tests.support.events import LambdaContext
    from tests.support.n8n_stub import AwsRecorder
    from tests.support.template import load_handler

    client = factory.client(n8n_webhook_url=n8n.url)
    user = factory.user(client)
    with db.begin() as conn:
        conn.execute(
            text("INSERT INTO connections (connection_id, user_id, client_id) VALUES ('crash-conn', :u, :c)"),
            {"u": user.id, "c": client.id},
        )
    recorder = AwsRecorder().start()
    try:
        token = factory.token(user)
        status, conv, _ = api_client.call("POST", "/conversations", token=token, body={"title": "crash"})
        conv_id = conv["conversation"]["id"]
        status, _, _ = api_client.call("POST", f"/conversations/{conv_id}/messages", token=token, body={"content": "hi"})
        assert status == 201
        (invoke,) = recorder.take_invokes()
        real = realtime.push_to_conversation
        crashed = {"n": 0}

        def crash_once(session, conversation, event):
            if event.get("type") == "message.created" and event["message"]["role"] == "assistant" and not crashed["n"]:
                crashed["n"] += 1
                raise ContainerDied("the container died between commit and push")
            return real(session, conversation, event)

        monkeypatch.setattr(realtime, "push_to_conversation", crash_once)
        dispatch = load_handler("DispatchFunction")
        with pytest.raises(ContainerDied):
            dispatch(invoke, LambdaContext("DispatchFunction"))
        rows = messages_of(db, conv_id)
        assert [r["role"] for r in rows] == ["user", "assistant"] and not rows[1]["metadata"].get("pushed")
        result = dispatch(invoke, LambdaContext("DispatchFunction"))  # Lambda's async retry
        assert result == {"result": "recovered"}
        again = dispatch(invoke, LambdaContext("DispatchFunction"))  # a duplicate: nothing
        assert again == {"result": "noop"}
    finally:
        recorder.stop()
    rows = messages_of(db, conv_id)
    assert [r["role"] for r in rows] == ["user", "assistant"] and rows[1]["metadata"].get("pushed") is True
    replies_pushed = [e for e in recorder.events("crash-conn") if e["type"] == "message.created" and e["message"]["role"] == "assistant"]
    assert len(replies_pushed) == 1 and not consistency(db, conv_id)
    record("faults.crash_after_store", replies_stored=1, replies_pushed=len(replies_pushed), retries=2)
    bump("faults", "faults_injected")
