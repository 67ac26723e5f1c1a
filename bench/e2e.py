"""Sections 4-6 on one emulated stack (bench/stack.py):

4. End-to-end chat: WebSocket sendMessage -> message.created with role assistant, with 1 client
   and with 20 concurrent clients (each its own user, conversation and connection); replies/s.
   Emulator share: e2e latency minus the handler durations of the turn (sum of the emulator's
   REPORT durations in the measuring window / turns), compared with a plain aiohttp WebSocket
   echo (bench/emulator_bench.py's server) and the emulator's own ping -> pong round trip.
5. Fan-out: realtime.push_to_users in this process, through the emulator's @connections endpoint,
   to 1 and to 100 open connections of one user (receivers in their own process,
   bench/ws_clients.py); time from the push call until the last socket received it.
6. Memory: every route is called once more (any answer), the non-HTTP functions are invoked with
   their sample events, then each function's worker peak RSS is read from /_emulator/stats.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import aiohttp

from bench.common import ROOT, Fixture, Row, make_client, make_conversation, make_user, median, use_database
from bench.stack import Stack

RECV_TIMEOUT = 30.0
MAX_WORKERS = 4  # warm workers per function (emulator default 8): fewer cold starts on 2 cores


# --------------------------------------------------------------------------- helpers
async def _ticket(http: aiohttp.ClientSession, base: str, token: str) -> str:
    async with http.post(f"{base}/auth/ws-ticket", headers={"Authorization": f"Bearer {token}"}) as r:
        body = await r.json()
        assert r.status == 200, body
        return str(body["ticket"])


async def _chat(ws: aiohttp.ClientWebSocketResponse, conv: uuid.UUID, text: str, windows: list[tuple[float, float]] | None = None) -> float:
    t0 = time.perf_counter()
    m0 = time.monotonic()
    await ws.send_str(json.dumps({"action": "sendMessage", "conversation_id": str(conv), "content": text}))
    deadline = time.monotonic() + RECV_TIMEOUT
    while True:
        msg = await asyncio.wait_for(ws.receive(), max(0.1, deadline - time.monotonic()))
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"socket closed: {msg}")
        data = json.loads(msg.data)
        kind = data.get("type")
        if kind == "message.created" and data["message"]["role"] == "assistant":
            if windows is not None:
                windows.append((m0, time.monotonic()))
            return (time.perf_counter() - t0) * 1000
        if kind in ("message.failed", "error"):
            raise RuntimeError(f"turn failed: {data}")


async def _ping(ws: aiohttp.ClientWebSocketResponse) -> float:
    t0 = time.perf_counter()
    await ws.send_str('{"action": "ping"}')
    while True:
        msg = await asyncio.wait_for(ws.receive(), RECV_TIMEOUT)
        if json.loads(msg.data).get("type") == "pong":
            return (time.perf_counter() - t0) * 1000


def _plain_echo(n: int) -> list[float]:
    """bench/emulator_bench.py's plain aiohttp WebSocket echo server and client, reused."""
    from bench import emulator_bench as eb

    proc, urls = eb.start([sys.executable, eb.__file__, "--plain-server"], "plain ready")
    try:
        return asyncio.run(eb.ws_echo(urls["ws"], n))
    finally:
        proc.terminate()
        proc.wait(10)


class Receivers:
    """bench/ws_clients.py in its own process: n sockets of one user."""

    def __init__(self, ws_url: str, tickets: list[str], max_seconds: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.ws_clients", ws_url, str(max_seconds)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(tickets) + "\n")
        self.proc.stdin.flush()
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(ln) for ln in self.proc.stdout], daemon=True).start()  # type: ignore[union-attr]
        line = self.lines.get(timeout=60)
        if not line.startswith("READY"):
            raise RuntimeError(f"receivers: {line}")

    def done(self, k: int) -> float:
        while True:
            parts = self.lines.get(timeout=RECV_TIMEOUT).split()
            if parts[0] == "DONE" and int(parts[1]) == k:
                return float(parts[2])

    def close(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# --------------------------------------------------------------------------- the run
def run(
    db_url: str, turns_1: int = 30, clients: int = 20, turns_n: int = 5, fanout: int = 100, fan_reps: int = 15, echo_n: int = 300
) -> tuple[list[Row], list[str], dict[str, Any]]:
    from tools.demo_assistant import serve

    assistant = serve(port=0)
    n8n_url = f"http://127.0.0.1:{assistant.server_address[1]}/webhook/bench"
    stack = Stack(db_url, n8n_url, max_workers=MAX_WORKERS)
    rows: list[Row] = []
    notes: list[str] = []
    try:
        use_database(db_url, WS_MANAGEMENT_ENDPOINT=stack.aws_url, DB_POOL_SIZE="4")
        cid = make_client(f"bench-run-e2e-{uuid.uuid4().hex[:8]}", n8n_url=n8n_url)
        admin = make_user(cid, "admin@bench.test", role="admin")
        users = [make_user(cid, f"chat{i}@bench.test") for i in range(clients + 1)]
        convs = [make_conversation(u) for u in users]
        fan_user, one_user = make_user(cid, "fan100@bench.test"), make_user(cid, "fan1@bench.test")
        rows += asyncio.run(_chat_phase(stack, users, convs, admin, turns_1, turns_n, notes))
        echo = _plain_echo(echo_n)
        rows.append(
            Row(
                "4 e2e chat",
                "plain aiohttp WebSocket echo round trip (emulator_bench server)",
                echo,
                note=f"n={len(echo)}; same client code as bench/emulator_bench.py",
            )
        )
        rows += _fanout_phase(stack, fan_user, one_user, fanout, fan_reps, notes)
        asyncio.run(_touch_all(stack, admin, notes))
        time.sleep(1.0)  # $disconnect invocations of the closed sockets
        stats = stack.stats()
        rows += _memory_rows(stats, notes)
        if stack.errors:
            notes.append("Emulator log errors seen (first 3): " + " | ".join(stack.errors[:3]))
        return rows, notes, stats
    except Exception:
        sys.stderr.write("emulator output (tail):\n" + "\n".join(stack.tail[-60:]) + "\n")
        raise
    finally:
        stack.stop()
        assistant.shutdown()
        try:
            from sqlalchemy import text

            from bitworks.db import get_engine

            with get_engine().begin() as conn:
                conn.execute(text("DELETE FROM clients WHERE slug LIKE 'bench-run-e2e-%'"))
        except Exception:
            pass


async def _chat_phase(
    stack: Stack, users: list[Fixture], convs: list[uuid.UUID], admin: Fixture, turns_1: int, turns_n: int, notes: list[str]
) -> list[Row]:
    rows = []
    async with aiohttp.ClientSession() as http:
        tickets = [await _ticket(http, stack.http_url, u.token) for u in users]
        sockets = [await http.ws_connect(f"{stack.ws_url}?ticket={t}") for t in tickets]
        one, conv = sockets[0], convs[0]
        # -- 1 client: warm-up, then sequential turns
        for i in range(3):
            await _chat(one, conv, f"warm-up {i}")
        stats0 = stack.stats()["functions"]
        t_start = time.monotonic()
        windows: list[tuple[float, float]] = []
        lat1 = [await _chat(one, conv, f"hello {i}", windows) for i in range(turns_1)]
        await asyncio.sleep(0.3)  # the last REPORT lines (typing off, dispatch end)
        handler_ms, reports = stack.report_sum(t_start, time.monotonic())
        covered = stack.handler_cover(windows)
        firsts, seconds = stack.handler_split(windows)
        stats1 = stack.stats()["functions"]
        invoked = {
            k: v["invocations"] - stats0[k]["invocations"] for k, v in stats1.items() if v["invocations"] != stats0[k]["invocations"]
        }
        per_turn = handler_ms / len(lat1)
        # emulator ping (WsPingFunction), for the emulator's own per-frame cost with a tiny handler
        for _ in range(10):
            await _ping(one)
        t_p = time.monotonic()
        pings = [await _ping(one) for _ in range(100)]
        await asyncio.sleep(0.2)
        ping_handler, ping_reports = stack.report_sum(t_p, time.monotonic())
        outside = [w - c for w, c in zip(lat1, covered, strict=True)]
        rows.append(
            Row(
                "4 e2e chat",
                "sendMessage -> assistant reply, 1 client",
                lat1,
                note=(
                    f"n={len(lat1)} sequential turns after 3 warm-up; handlers {per_turn:.1f} ms per turn "
                    f"({reports} REPORT lines: {', '.join(f'{k} x{v}' for k, v in sorted(invoked.items()))}); "
                    f"WsSendMessage {median(firsts):.1f} ms + Dispatch (n8n call and pushes included) "
                    f"{median(seconds):.1f} ms (medians, REPORT); "
                    f"while the client waited, some handler was running {median(covered):.1f} ms (median); "
                    f"outside any handler (emulator + WebSocket + client) {median(outside):.1f} ms "
                    f"= {median([o / w for o, w in zip(outside, lat1, strict=True)]) * 100:.0f}% of a turn (median)"
                ),
            )
        )
        rows.append(
            Row(
                "4 e2e chat",
                "emulator WebSocket ping -> pong (WsPingFunction, 1 DB update)",
                pings,
                note=(
                    f"n={len(pings)}; handler {ping_handler / max(1, ping_reports):.2f} ms per ping (REPORT), so the "
                    f"emulator's WebSocket-in + worker IPC + frame-out costs about "
                    f"{median(pings) - ping_handler / max(1, ping_reports):.2f} ms per message"
                ),
            )
        )
        # -- N clients concurrently (each own user, conversation, connection)
        others = list(zip(sockets[1:], convs[1:], strict=True))
        # Warm-up in growing waves: every worker started, without piling up parallel cold starts.
        for wave in (others[:3], others[:8], others):
            await asyncio.gather(*(_chat(ws, c, "warm-up") for ws, c in wave))

        async def client(ws: aiohttp.ClientWebSocketResponse, c: uuid.UUID) -> list[float]:
            return [await _chat(ws, c, f"hello {i}") for i in range(turns_n)]

        t0 = time.perf_counter()
        t_mono = time.monotonic()
        results = await asyncio.gather(*(client(ws, c) for ws, c in others))
        elapsed = time.perf_counter() - t0
        handler_n, _ = stack.report_sum(t_mono, time.monotonic())
        latn = [x for r in results for x in r]
        rows.append(
            Row(
                "4 e2e chat",
                f"sendMessage -> assistant reply, {len(others)} concurrent clients",
                latn,
                note=(
                    f"{len(latn)} turns ({turns_n} per client after 1 warm-up) in {elapsed:.2f} s = "
                    f"{len(latn) / elapsed:.1f} replies/s; handler time {handler_n / len(latn):.1f} ms per turn; "
                    f"1 client alone: {1000 / median(lat1):.1f} replies/s"
                ),
            )
        )
        # a subscribe and an unknown action, so that those functions run once for the memory table
        adm_ws = await http.ws_connect(f"{stack.ws_url}?ticket={await _ticket(http, stack.http_url, admin.token)}")
        await adm_ws.send_str(json.dumps({"action": "subscribe", "conversation_id": str(conv)}))
        await adm_ws.send_str(json.dumps({"action": "bench-unknown"}))
        for _ in range(2):
            await asyncio.wait_for(adm_ws.receive(), RECV_TIMEOUT)
        for ws in [*sockets, adm_ws]:
            await ws.close()
    notes.append(
        "E2E method: latency is measured by the client from sending the sendMessage frame to receiving message.created "
        "with role assistant (the demo assistant answers n8n's way, synchronously). Handler time is the sum of the "
        "emulator's REPORT durations (worker invocation, as Lambda reports it; it includes the n8n call inside the "
        "dispatch and work after the reply was pushed, e.g. typing off) divided by the turns. The emulator's share: each "
        "REPORT line gives an interval [seen - duration, seen]; per turn, the union of those intervals inside "
        "[send, reply received] is handler time on the critical path, the rest is the emulator's own hops outside any "
        "handler. Result: the handlers cover practically the whole turn, because the emulator's work on the path "
        "(the async Invoke, the @connections posts of ack, typing and reply) happens while a handler waits on it, so "
        "REPORT time contains it. The emulator's cost per hop is therefore taken from the same run: ping -> pong round "
        "trip minus its handler duration is the WebSocket-in + worker IPC + frame-out cost; the plain aiohttp echo is "
        "the floor of one WebSocket round trip on loopback; the 1-connection push in section 5 is one @connections "
        f"call from a handler (signed by bitworks.awscall). 20 clients: the emulator runs at most {MAX_WORKERS} workers per "
        "function (its default is 8; fewer parallel cold starts on 2 cores), so turns queue for a worker."
    )
    return rows


def _fanout_phase(stack: Stack, fan_user: Fixture, one_user: Fixture, fanout: int, reps: int, notes: list[str]) -> list[Row]:
    from bitworks.db import session_scope
    from bitworks.realtime import push_to_users

    async def tickets(user: Fixture, n: int) -> list[str]:
        async with aiohttp.ClientSession() as http:
            return [await _ticket(http, stack.http_url, user.token) for _ in range(n)]

    many = Receivers(stack.ws_url, asyncio.run(tickets(fan_user, fanout)), 300)
    single = Receivers(stack.ws_url, asyncio.run(tickets(one_user, 1)), 300)
    out: dict[int, list[float]] = {1: [], fanout: []}
    call: dict[int, list[float]] = {1: [], fanout: []}
    sent: dict[int, int] = {}
    # CPU spent by each party during the measured 100-connection pushes (/proc, 10 ms ticks: summed
    # over all repetitions): the sender (this process), the emulator, the receivers' process.
    cpu = {"sender": 0.0, "emulator": 0.0, "receivers": 0.0}
    pids = {"emulator": stack.proc.pid, "receivers": many.proc.pid}
    try:
        k = 0
        for rep in range(reps + 3):
            for user, recv, n in ((one_user, single, 1), (fan_user, many, fanout)):
                k += 1
                before = {name: _cpu_ms(pid) for name, pid in pids.items()}
                c0 = time.process_time()
                with session_scope() as s:
                    t0 = time.monotonic()
                    result = push_to_users(s, [user.user_id], {"type": "bench.fanout", "k": k})
                    t1 = time.monotonic()
                last = recv.done(k)
                sent[n] = result.sent
                if rep >= 3:  # 3 warm-up rounds (client pool, threads)
                    out[n].append((last - t0) * 1000)
                    call[n].append((t1 - t0) * 1000)
                    if n == fanout:
                        cpu["sender"] += (time.process_time() - c0) * 1000
                        for name, pid in pids.items():
                            cpu[name] += _cpu_ms(pid) - before[name]
    finally:
        many.close()
        single.close()
    notes.append(
        f"Fan-out method: push_to_users(session, [user], event) called in the bench process (bitworks.awscall "
        f"PostToConnection -> emulator @connections -> WebSocket), receivers in a separate process; time from "
        f"the call until the last of the user's sockets received the event (system-wide monotonic clock). "
        f"{reps} interleaved repetitions after 3 warm-up; sent per push: {sent}. The Management API has one "
        "HTTP request per connection (no batch call), so the cost is per connection: botocore's client pipeline "
        "took ~1.2 ms of GIL-held CPU per call (100 connections: 119 ms); signing by hand with a 32-thread pool "
        "and http.client, 40-63 ms (the threads mostly traded the GIL; http.client's email-based header parser "
        "was half the CPU); now bitworks.awscall.call_many keeps up to 32 requests in flight over kept-alive "
        "connections from the calling thread, with its own minimal HTTP/1.1 reader. The next row times the calls "
        "alone against a loopback stub. In AWS each call is network-bound (milliseconds), which the 32 requests in "
        "flight overlap."
    )
    per_connection = {name: ms * 1000 / (reps * fanout) for name, ms in cpu.items()}
    total_us = sum(per_connection.values())
    cpu_note = (
        "; CPU per connection: "
        + ", ".join(f"{name} {us:.0f} µs" for name, us in per_connection.items())
        + f" = {total_us:.0f} µs, so on {os.cpu_count()} cores {fanout} connections need at least "
        f"{total_us * fanout / 1000 / (os.cpu_count() or 1):.1f} ms of the three processes' CPU"
    )
    calls_only = _calls_only(fanout, reps)
    return [
        Row(
            "5 fan-out",
            f"push to {fanout} connections of one user vs 1",
            out[fanout],
            out[1],
            goal=5.0,
            floor_label="push to 1 connection",
            note=(
                f"n={len(out[fanout])}; the push call itself returned after {median(call[fanout]):.1f} ms "
                f"(1 connection: {median(call[1]):.2f} ms), i.e. {median(call[fanout]) / fanout:.2f} ms per connection "
                f"in the sending Lambda{cpu_note}"
            ),
        ),
        Row(
            "5 fan-out",
            f"the {fanout} signed PostToConnection calls alone, to a loopback stub answering 202",
            calls_only[fanout],
            calls_only[1],
            floor_label="1 call",
            note=(
                "bitworks.awscall.post_to_connections against bench.stub_lambda in its own process: no emulator, no "
                "WebSocket, no database; what the per-connection HTTP call costs in CPython on this host"
            ),
        ),
    ]


def _cpu_ms(pid: int) -> float:
    """utime + stime of a process, in ms (Linux /proc; 0 where there is none)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def _calls_only(fanout: int, reps: int) -> dict[int, list[float]]:
    from bench.warm import start_stub
    from bitworks.awscall import post_to_connections

    stub, url = start_stub()
    data = b'{"type":"bench.fanout"}'
    out: dict[int, list[float]] = {1: [], fanout: []}
    try:
        for rep in range(reps + 3):
            for n in (1, fanout):
                ids = [f"bench{i}=" for i in range(n)]
                t0 = time.monotonic()
                errors = post_to_connections(f"{url}/prod", ids, data)
                elapsed = (time.monotonic() - t0) * 1000
                assert errors == [None] * n, errors
                if rep >= 3:
                    out[n].append(elapsed)
    finally:
        stub.terminate()
        stub.wait(5)
    return out


async def _touch_all(stack: Stack, admin: Fixture, notes: list[str]) -> None:
    from tools.template import http_routes

    statuses: dict[str, int] = {}
    sem = asyncio.Semaphore(2)  # two cold starts at a time: one per core
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:

        async def touch(method: str, route: str, name: str) -> None:
            path = route.replace("{proxy+}", "bench")
            while "{" in path:
                a, b = path.index("{"), path.index("}")
                path = path[:a] + str(uuid.uuid4()) + path[b + 1 :]
            data = b"{}" if method in ("POST", "PUT") else None
            async with (
                sem,
                http.request(
                    method,
                    stack.http_url + path,
                    data=data,
                    headers={"Authorization": f"Bearer {admin.token}", "Content-Type": "application/json"},
                ) as r,
            ):
                await r.read()
                statuses[name] = r.status

        await asyncio.gather(*(touch(m, r, n) for (m, r), n in sorted(http_routes().items())))
    for name in ("SweeperFunction", "TurnFailureFunction", "ImportWorkerFunction"):
        payload = json.loads((ROOT / "events" / f"{name}.json").read_text())
        statuses[name] = await asyncio.to_thread(stack.invoke, name, payload)
    bad = {k: v for k, v in statuses.items() if v >= 500}
    notes.append(
        f"Memory pass: every HTTP route called once more with an admin token (any answer), Sweeper/TurnFailure/"
        f"ImportWorker invoked with events/*.json; 5xx answers: {bad or 'none'}."
    )


def _memory_rows(stats: dict[str, Any], notes: list[str]) -> list[Row]:
    rows = []
    missing = []
    for name, s in sorted(stats["functions"].items()):
        if not s["invocations"]:
            missing.append(name)
            continue
        rows.append(
            Row(
                "6 memory",
                f"{name} worker peak RSS",
                [s["peak_rss_mb"]],
                goal=160.0,
                unit="MB",
                value_goal=True,
                note=f"{s['workers']} worker(s), {s['invocations']} invocations, errors {s['errors']}",
            )
        )
    if missing:
        notes.append(f"Memory: not invoked in this run (no figure): {', '.join(missing)}.")
    return rows
