"""Fan-out receivers in their own process (so they do not share the pushing process's GIL).

    python -m bench.ws_clients WS_URL MAX_SECONDS < tickets.json
Opens one WebSocket per ticket, prints "READY n", then for every {"type": "bench.fanout", "k": K}
prints "DONE K last first" (time.monotonic() of the last and first socket to receive it; the
clock is system-wide, so the pushing process can compare) once all sockets have it.
Exits when stdin closes or after MAX_SECONDS.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp


async def main(ws_url: str, max_seconds: float) -> None:
    tickets = json.loads(sys.stdin.readline())
    got: dict[int, list[float]] = {}
    n = len(tickets)
    async with aiohttp.ClientSession() as session:
        sem = asyncio.Semaphore(2)  # few $connect workers: 8 parallel cold starts on 2 cores can pass the 10 s timeout

        async def connect(ticket: str) -> aiohttp.ClientWebSocketResponse:
            async with sem:
                return await session.ws_connect(f"{ws_url}?ticket={ticket}", timeout=aiohttp.ClientWSTimeout(ws_close=5), heartbeat=None)

        sockets = await asyncio.gather(*(connect(t) for t in tickets))
        print(f"READY {n}", flush=True)

        async def receive(ws: aiohttp.ClientWebSocketResponse) -> None:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                t = time.monotonic()
                data = json.loads(msg.data)
                if data.get("type") == "bench.fanout":
                    k = int(data["k"])
                    times = got.setdefault(k, [])
                    times.append(t)
                    if len(times) == n:
                        print(f"DONE {k} {max(times):.6f} {min(times):.6f}", flush=True)
                        del got[k]

        async def stdin_closed() -> None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, sys.stdin.read)

        tasks = [asyncio.ensure_future(receive(ws)) for ws in sockets]
        try:
            await asyncio.wait_for(stdin_closed(), max_seconds)
        except TimeoutError:
            pass
        for ws in sockets:
            await ws.close()
        for t in tasks:
            t.cancel()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
