"""`make dev`: the whole product on this machine, no Docker, no AWS.

Starts the embedded PostgreSQL (or uses DATABASE_URL), migrates, seeds the demo data, starts the
demo assistant unless N8N_WEBHOOK_URL points at a real n8n, and serves the SAM template through
the local emulator: HTTP API on 127.0.0.1:3000, WebSocket API on 127.0.0.1:3001.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ROOT / ".local"
sys.path.insert(0, str(ROOT / "layers" / "common"))


def local_jwt_secret() -> str:
    """Generated once per checkout and kept in .local (git-ignored): tokens survive restarts."""
    path = LOCAL / "dev-secrets.json"
    if path.exists():
        return str(json.loads(path.read_text())["jwt_secret"])
    LOCAL.mkdir(exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.write_text(json.dumps({"jwt_secret": secret}))
    path.chmod(0o600)
    return secret


def emulator_env(database_url: str, jwt_secret: str, n8n_url: str | None, http_url: str, **extra: str) -> dict[str, Any]:
    """SAM-style env-vars file content: 'Parameters' apply to every function of the template."""
    params = {
        "STAGE": "local",
        "DATABASE_URL": database_url,
        "DB_SECRET_ARN": "",
        "JWT_SECRET": jwt_secret,
        "JWT_SECRET_ARN": "",
        "DB_PROXY": "false",
        "DB_SSL_CA_FILE": "",
        "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": "",
        "PUBLIC_API_URL": http_url,
        "N8N_WEBHOOK_URL": n8n_url or "",
        "WS_MANAGEMENT_ENDPOINT": "",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    params.update(extra)
    return {"Parameters": params}


def prepare_database(database_url: str) -> None:
    from sqlalchemy import create_engine

    from bitworks.migrate import upgrade

    engine = create_engine(database_url)
    try:
        print(f"database: {upgrade(engine)}")
    finally:
        engine.dispose()


def seed_demo(database_url: str, n8n_url: str | None) -> dict[str, Any]:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from tools.seed import seed

    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            creds = seed(session, LOCAL / "demo-credentials.json", n8n_url)
            session.commit()
        return creds
    finally:
        engine.dispose()


def _print_banner(creds: dict[str, Any], http: str, ws: str, assistant: str | None) -> None:
    print("\n" + "=" * 72)
    print(" Bitworks Message — local stack")
    print(f"   HTTP API   {http}        (health: {http}/health)")
    print(f"   WebSocket  {ws}?ticket=...")
    if (ROOT / "web").exists():
        print(f"   Demo page  {http}/web/demo.html?client={creds['client_id']}")
        print(f"   Console    {http}/web/console.html")
    print(f"   n8n        {assistant or os.environ.get('N8N_WEBHOOK_URL')}")
    print(f"   client_id  {creds['client_id']}")
    for role in ("superadmin", "admin", "user"):
        print(f"   {role:<10} {creds[role]['email']} / {creds[role]['password']}")
    print("   (kept in .local/demo-credentials.json)   Ctrl+C stops everything")
    print("=" * 72 + "\n", flush=True)


async def _run(args: argparse.Namespace) -> None:
    from bitworks.config import ConfigError
    from devserver import Emulator, Options
    from tools.demo_assistant import serve as serve_assistant
    from tools.localdb import database_url as resolve_db

    db_url = resolve_db(LOCAL / "pgdata")
    # The seed hashes passwords through the layer, which reads its settings from the environment.
    os.environ.update({"DATABASE_URL": db_url, "JWT_SECRET": local_jwt_secret(), "STAGE": "local"})
    prepare_database(db_url)
    n8n_url = os.environ.get("N8N_WEBHOOK_URL") or None
    assistant = None
    if not n8n_url:
        assistant = serve_assistant(port=args.assistant_port)
        n8n_url = f"http://127.0.0.1:{assistant.server_address[1]}/webhook/demo-assistant"
    creds = seed_demo(db_url, n8n_url)
    http_url = f"http://{args.host}:{args.http_port}"
    env_file = LOCAL / "emulator-env.json"
    env_file.write_text(json.dumps(emulator_env(db_url, local_jwt_secret(), n8n_url, http_url), indent=2))
    env_file.chmod(0o600)
    static = [f"{ROOT / 'web'}:/web/"] if (ROOT / "web").exists() else []
    options = Options(
        template=str(ROOT / "template.yaml"),
        host=args.host,
        http_port=args.http_port,
        ws_port=args.ws_port,
        aws_port=args.aws_port,
        env_vars=str(env_file),
        static=static,
        async_retry_delays=(2.0, 4.0),
    )
    emulator = Emulator(options)
    try:
        await emulator.start()
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None
    _print_banner(creds, emulator.http_url, emulator.ws_url, n8n_url if assistant else None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print("stopping…", flush=True)
    await emulator.stop()
    if assistant is not None:
        assistant.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.dev", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=3000)
    parser.add_argument("--ws-port", type=int, default=3001)
    parser.add_argument("--aws-port", type=int, default=3002)
    parser.add_argument("--assistant-port", type=int, default=3005)
    args = parser.parse_args(argv)
    try:
        asyncio.run(_run(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
