"""CLI: python -m devserver --template template.yaml [...]"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from .server import Emulator, Options


def _parse_overrides(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        # Accept both "K=V" and SAM's "ParameterKey=K,ParameterValue=V".
        if item.startswith("ParameterKey="):
            parts = dict(p.split("=", 1) for p in item.split(",") if "=" in p)
            out[parts.get("ParameterKey", "")] = parts.get("ParameterValue", "")
        elif "=" in item:
            k, v = item.split("=", 1)
            out[k] = v
    return out


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(prog="python -m devserver", description=__doc__)
    p.add_argument("--template", "-t", default="template.yaml")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--http-port", type=int, default=3000)
    p.add_argument("--ws-port", type=int, default=3001)
    p.add_argument("--aws-port", type=int, default=3002, help="@connections + Lambda Invoke + /_emulator")
    p.add_argument("--env-vars", help="SAM-style env vars JSON file")
    p.add_argument("--parameter-overrides", nargs="*", default=[], metavar="K=V")
    p.add_argument("--static", action="append", default=[], metavar="DIR[:URLPREFIX]")
    p.add_argument("--async-retry-delays", default="60,120", help="seconds between async retries (AWS: ~60,120)")
    p.add_argument("--schedule-speedup", type=float, default=1.0, help="divide schedule intervals by this")
    p.add_argument("--no-schedules", action="store_true", help="do not fire Schedule events")
    p.add_argument("--ws-idle-timeout", type=float, default=600.0)
    p.add_argument("--ws-max-duration", type=float, default=7200.0)
    p.add_argument("--integration-timeout", type=float, default=30.0)
    p.add_argument("--max-workers", type=int, default=8, help="warm workers per function")
    p.add_argument("--reload-interval", type=float, default=0.5, help="code change poll interval; 0 = off")
    p.add_argument("--stack-name", default="local")
    a = p.parse_args(argv)
    return Options(
        template=a.template,
        host=a.host,
        http_port=a.http_port,
        ws_port=a.ws_port,
        aws_port=a.aws_port,
        env_vars=a.env_vars,
        parameter_overrides=_parse_overrides(a.parameter_overrides),
        static=a.static,
        async_retry_delays=tuple(float(x) for x in a.async_retry_delays.split(",") if x.strip()),
        schedule_speedup=a.schedule_speedup,
        schedules=not a.no_schedules,
        ws_idle_timeout=a.ws_idle_timeout,
        ws_max_duration=a.ws_max_duration,
        integration_timeout=a.integration_timeout,
        max_workers=a.max_workers,
        reload_interval=a.reload_interval,
        stack_name=a.stack_name,
    )


async def _serve(options: Options) -> None:
    emulator = Emulator(options)
    await emulator.start()
    print(emulator.ready_line, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await emulator.stop()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="devserver: %(message)s", stream=sys.stdout)
    options = parse_args(argv)
    try:
        asyncio.run(_serve(options))
    except (OSError, ValueError) as exc:
        print(f"devserver: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
