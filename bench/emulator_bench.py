"""Benchmark the local emulator (devserver) against a plain aiohttp server, on loopback.

    .venv/bin/python bench/emulator_bench.py [--requests 2000] [--concurrency 16] [--ws-messages 1000]

Starts `python -m devserver` on the test fixture template (no-op handler at GET /noop, two-way
WebSocket route "echo") and a plain aiohttp HTTP+WS echo server, each in its own process, then
measures both with the same aiohttp client. Writes a markdown table to bench/results/emulator.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "tests" / "devserver" / "fixtures" / "template.yaml"
RESULTS = ROOT / "bench" / "results" / "emulator.md"
# serverless-offline 13 on this machine, measured earlier (same workload shape).
REFERENCE = {"http_p50": 1.1, "http_p95": None, "rps": "1,900-2,700", "ws_p50": 0.54, "ws_p95": None}
WS_ECHO = json.dumps({"meta": {"action": "echo"}, "data": "x"})


# --------------------------------------------------------------------------- plain server
def plain_server() -> None:
    from aiohttp import web

    async def http_handler(request: web.BaseRequest) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for msg in ws:
                await ws.send_str(msg.data)
            return ws
        return web.Response(text="ok", content_type="application/json")

    async def main() -> None:
        runner = web.ServerRunner(web.Server(http_handler, access_log=None))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"plain ready http=http://127.0.0.1:{port} ws=ws://127.0.0.1:{port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# --------------------------------------------------------------------------- helpers
def start(cmd: list[str], marker: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(marker):
            # Keep draining the log pipe so the server never blocks on a full pipe.
            import threading

            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
            return proc, dict(p.split("=", 1) for p in line.split()[2:])
    proc.kill()
    raise RuntimeError(f"{cmd} did not become ready")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def http_sequential(url: str, n: int) -> list[float]:
    out = []
    async with aiohttp.ClientSession() as s:
        for _ in range(50):  # warm-up: worker started, connection open
            async with s.get(url) as r:
                await r.read()
        for _ in range(n):
            t0 = time.perf_counter()
            async with s.get(url) as r:
                await r.read()
                assert r.status == 200
            out.append((time.perf_counter() - t0) * 1000)
    return out


async def http_concurrent(url: str, clients: int, total: int) -> float:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as s:
        remaining = total

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                async with s.get(url) as r:
                    await r.read()

        await asyncio.gather(*(worker() for _ in range(clients)))  # warm all workers
        remaining = total
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return total / (time.perf_counter() - t0)


async def ws_echo(url: str, n: int) -> list[float]:
    out = []
    async with aiohttp.ClientSession() as s, s.ws_connect(url) as ws:
        for i in range(n + 50):
            t0 = time.perf_counter()
            await ws.send_str(WS_ECHO)
            await ws.receive_str()
            if i >= 50:
                out.append((time.perf_counter() - t0) * 1000)
    return out


async def measure(http_url: str, ws_url: str, args: argparse.Namespace) -> dict[str, float]:
    seq = await http_sequential(http_url, args.requests)
    rps = await http_concurrent(http_url, args.concurrency, args.requests * 2)
    ws = await ws_echo(ws_url, args.ws_messages)
    return {
        "http_p50": statistics.median(seq),
        "http_p95": pct(seq, 0.95),
        "rps": rps,
        "ws_p50": statistics.median(ws),
        "ws_p95": pct(ws, 0.95),
    }


def fmt(v: float | str | None, unit: str) -> str:
    if v is None:
        return "—"
    if isinstance(v, str):
        return f"{v} {unit}"
    return f"{v:,.0f} {unit}" if unit == "req/s" else f"{v:.3f} {unit}"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--ws-messages", type=int, default=1000)
    p.add_argument("--plain-server", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.plain_server:
        plain_server()
        return 0

    load_before = os.getloadavg()[0]
    emu, urls = start(
        [
            sys.executable,
            "-m",
            "devserver",
            "--template",
            str(TEMPLATE),
            "--http-port",
            "0",
            "--ws-port",
            "0",
            "--aws-port",
            "0",
            "--no-schedules",
            "--reload-interval",
            "0.5",
        ],
        "devserver ready",
    )
    plain, purls = start([sys.executable, __file__, "--plain-server"], "plain ready")
    try:
        ours = asyncio.run(measure(f"{urls['http']}/noop", f"{urls['ws']}/dev", args))
        base = asyncio.run(measure(f"{purls['http']}/noop", purls["ws"], args))
        import urllib.request

        with urllib.request.urlopen(f"{urls['aws']}/_emulator/stats") as r:
            stats = json.loads(r.read())["functions"]
    finally:
        for proc in (emu, plain):
            proc.terminate()
            proc.wait(10)

    rows = [
        ("HTTP p50 (sequential)", "http_p50", "ms"),
        ("HTTP p95 (sequential)", "http_p95", "ms"),
        (f"HTTP throughput ({args.concurrency} concurrent)", "rps", "req/s"),
        ("WebSocket echo p50", "ws_p50", "ms"),
        ("WebSocket echo p95", "ws_p95", "ms"),
    ]
    lines = [
        "# Local emulator benchmark",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, loopback, "
        f"1-min load average {load_before:.1f} at start (other work on the machine skews both columns); "
        f"{args.requests} sequential HTTP requests, {args.requests * 2} at {args.concurrency} concurrent, "
        f"{args.ws_messages} WebSocket round trips. No-op Python handler (GET /noop), two-way WS route.",
        "",
        "| metric | devserver | plain aiohttp | devserver / plain | serverless-offline 13, measured earlier |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, key, unit in rows:
        ratio = ours[key] / base[key] if base[key] else float("nan")
        lines.append(f"| {label} | {fmt(ours[key], unit)} | {fmt(base[key], unit)} | {ratio:.2f}x | {fmt(REFERENCE[key], unit)} |")
    noop, echo = stats["Noop"], stats["WsEcho"]
    lines += [
        "",
        f"Worker peak RSS (from /_emulator/stats): Noop {noop['peak_rss_mb']} MB over "
        f"{noop['workers']} worker(s); WsEcho {echo['peak_rss_mb']} MB over {echo['workers']} worker(s).",
        "",
    ]
    text = "\n".join(lines)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
