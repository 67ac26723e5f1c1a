"""Wires the template model, the Lambda service and the three listeners together."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from aiohttp import web

from .aws_api import AwsApi
from .http_api import HttpApi, compile_route
from .lambda_service import LambdaService
from .scheduler import Scheduler
from .template import load_env_vars_file, load_model
from .websocket_api import WebSocketApi
from .workers import CodeWatcher, Logger

log = logging.getLogger("devserver")


@dataclass
class Options:
    template: str = "template.yaml"
    host: str = "127.0.0.1"
    http_port: int = 3000
    ws_port: int = 3001
    aws_port: int = 3002
    env_vars: str | None = None
    parameter_overrides: dict[str, str] = field(default_factory=dict)
    static: list[str] = field(default_factory=list)  # "DIR[:URLPREFIX]"
    async_retry_delays: tuple[float, ...] = (60.0, 120.0)
    schedule_speedup: float = 1.0
    schedules: bool = True
    ws_idle_timeout: float = 600.0
    ws_max_duration: float = 7200.0
    integration_timeout: float = 30.0
    max_workers: int = 8
    reload_interval: float = 0.5
    stack_name: str = "local"
    log_stream: IO[str] | None = None


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _parse_static(items: list[str], routes: list[Any]) -> list[tuple[Path, str]]:
    out = []
    for item in items:
        directory, _, prefix = item.partition(":")
        prefix = "/" + (prefix or "/web/").strip("/") + "/"
        first = prefix.strip("/").split("/")[0]
        for c in routes:
            segs = c.route.path.strip("/").split("/")
            if c.route.route_key != "$default" and segs and segs[0] == first:
                raise ValueError(f"--static prefix {prefix} collides with route {c.route.route_key}")
        out.append((Path(directory).resolve(), prefix))
    return out


class Emulator:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.logger = Logger(options.log_stream)
        self._runners: list[web.BaseRunner] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self.http_url = self.ws_url = self.aws_url = ""
        self.lambdas: LambdaService | None = None
        self.ws: WebSocketApi | None = None
        self.scheduler: Scheduler | None = None

    async def start(self) -> None:
        o = self.options
        socks: list[socket.socket] = []
        try:
            for port in (o.http_port, o.ws_port, o.aws_port):
                socks.append(_listen(o.host, port))
            await self._start(socks)
        except BaseException:
            await self.stop()
            for s in socks:
                s.close()
            raise

    async def _start(self, socks: list[socket.socket]) -> None:
        o = self.options
        host = f"[{o.host}]" if ":" in o.host else o.host
        ports = [s.getsockname()[1] for s in socks]
        self.http_url = f"http://{host}:{ports[0]}"
        self.ws_url = f"ws://{host}:{ports[1]}"
        self.aws_url = f"http://{host}:{ports[2]}"

        model = load_model(o.template, o.parameter_overrides, {"http": self.http_url, "ws": self.ws_url}, o.stack_name)
        overrides = load_env_vars_file(o.env_vars)
        self.lambdas = LambdaService(model, self.aws_url, overrides, self.logger, o.max_workers, o.async_retry_delays)
        static = _parse_static(o.static, [compile_route(r) for r in model.http_routes])
        http = HttpApi(self.lambdas, model.http_apis, model.http_routes, o.integration_timeout, static)
        if len(model.ws_apis) > 1:
            self.logger.write(f"devserver: {len(model.ws_apis)} WebSocket APIs; serving {model.ws_apis[0].logical_id}")
        self.ws = WebSocketApi(self.lambdas, model.ws_apis[0] if model.ws_apis else None, o.ws_idle_timeout, o.ws_max_duration)
        self.scheduler = Scheduler(self.lambdas, model.schedules if o.schedules else [], o.schedule_speedup)
        aws = AwsApi(self.lambdas, self.ws, lambda: {"schedules_fired": self.scheduler.fired if self.scheduler else {}})
        for handler, sock in zip((http.handle, self.ws.handle, aws.handle), socks, strict=True):
            # Low-level server: no router and no access log on the hot path.
            runner = web.ServerRunner(web.Server(handler, access_log=None), handle_signals=False)
            await runner.setup()
            await web.SockSite(runner, sock).start()
            self._runners.append(runner)
        if o.reload_interval > 0:
            self._tasks.append(asyncio.ensure_future(CodeWatcher(self.lambdas.pools, self.logger, o.reload_interval).run()))
        self.scheduler.start()
        for r in model.http_routes:
            self.logger.write(f"devserver: route {r.route_key} -> {r.function}")
        for api in model.ws_apis:
            for key, fn in api.routes.items():
                two = " (two-way)" if key in api.two_way else ""
                self.logger.write(f"devserver: websocket route {key} -> {fn}{two}")

    @property
    def ready_line(self) -> str:
        return f"devserver ready http={self.http_url} ws={self.ws_url} aws={self.aws_url}"

    async def stop(self) -> None:
        if self.scheduler:
            self.scheduler.stop()
        for t in self._tasks:
            t.cancel()
        if self.ws:
            await self.ws.stop()
        if self.lambdas:
            await self.lambdas.stop()
        for r in self._runners:
            await r.cleanup()
        self._runners.clear()


class Handle:
    """A running emulator on a background thread (for tests and scripts)."""

    def __init__(self, emulator: Emulator, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        self.emulator = emulator
        self.loop = loop
        self.thread = thread
        self.http_url, self.ws_url, self.aws_url = emulator.http_url, emulator.ws_url, emulator.aws_url

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self.emulator.stop(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(15)

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start(template: str = "template.yaml", **kwargs: Any) -> Handle:
    """Start the emulator in a background thread; ports default to 0 (free ports)."""
    for key in ("http_port", "ws_port", "aws_port"):
        kwargs.setdefault(key, 0)
    emulator = Emulator(Options(template=str(template), **kwargs))
    loop = asyncio.new_event_loop()
    started = threading.Event()
    error: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(emulator.start())
        except BaseException as exc:  # noqa: BLE001 - surfaced to the caller below
            error.append(exc)
            started.set()
            loop.close()
            return
        started.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name="devserver", daemon=True)
    thread.start()
    started.wait(30)
    if error:
        raise error[0]
    return Handle(emulator, loop, thread)
