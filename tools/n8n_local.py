"""A real n8n (2.8.4) on this machine, for trying the example workflows in n8n/ and for the
`n8n`-marked tests.

    python -m tools.n8n_local install                 # once: npm install + sqlite3 rebuild (minutes)
    python -m tools.n8n_local run --port 5678         # import credentials + workflows, publish, start
        [--credentials n8n/credentials.example.json] [--user-folder .local/n8n-data]

Facts this relies on (../shared/NOTES.md): n8n@2.8.4 is the newest release that runs on Node 20; it
installs from the npm registry with the xlsx override; this machine's npm skips install scripts,
so sqlite3 is rebuilt from source; `import:workflow` imports inactive and `publish:workflow`
activates (before `start`); the webhook goes live a few seconds after "n8n ready": poll it.
Everything lives under .local/ (git-ignored). Outbound telemetry and update checks are off.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTALL_DIR = ROOT / ".local" / "n8n"
N8N_BIN = INSTALL_DIR / "node_modules" / ".bin" / "n8n"
WORKFLOWS_DIR = ROOT / "n8n"
WORKFLOW_FILES = ("workflow-webhook-reply.json", "workflow-callback-reply.json")
VERSION = "2.8.4"
PACKAGE_JSON = {
    "name": "bitworks-local-n8n",
    "private": True,
    "dependencies": {"n8n": VERSION},
    # One transitive dependency otherwise downloads xlsx from outside the npm registry.
    "overrides": {"xlsx": "0.18.5"},
}
QUIET_ENV = {
    "N8N_DIAGNOSTICS_ENABLED": "false",
    "N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
    "N8N_TEMPLATES_ENABLED": "false",
    "N8N_PERSONALIZATION_ENABLED": "false",
    "EXTERNAL_FRONTEND_HOOKS_URLS": "",
    "N8N_DIAGNOSTICS_CONFIG_FRONTEND": "",
    "N8N_DIAGNOSTICS_CONFIG_BACKEND": "",
    "N8N_SECURE_COOKIE": "false",
    "N8N_ENFORCE_SETTINGS_FILE_PERMISSIONS": "false",
    "N8N_LOG_LEVEL": "info",
    "N8N_LOG_OUTPUT": "console",
    "DB_TYPE": "sqlite",
}


def installed() -> bool:
    """n8n is there and its sqlite3 native module was built (the marker is written last)."""
    return N8N_BIN.exists() and (INSTALL_DIR / ".bitworks-installed").exists()


def install(log: Path | None = None) -> float:
    """npm install n8n@VERSION into .local/n8n, then build sqlite3; returns the seconds it took."""
    if shutil.which("npm") is None:
        raise RuntimeError("npm not found: n8n needs Node.js 20 and npm")
    started = time.monotonic()
    INSTALL_DIR.mkdir(parents=True, exist_ok=True)
    (INSTALL_DIR / "package.json").write_text(json.dumps(PACKAGE_JSON, indent=2) + "\n")
    log = log or INSTALL_DIR / "install.log"
    with log.open("ab") as out:
        for cmd in (["npm", "install", "--no-audit", "--no-fund"], ["npm", "rebuild", "sqlite3"]):
            subprocess.run(cmd, cwd=INSTALL_DIR, stdout=out, stderr=subprocess.STDOUT, check=True)
    (INSTALL_DIR / ".bitworks-installed").write_text(VERSION + "\n")
    return time.monotonic() - started


def n8n_env(user_folder: Path, port: int, broker_port: int | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("N8N_")}
    env.update(QUIET_ENV)
    env.update(
        {
            "N8N_USER_FOLDER": str(user_folder),
            "N8N_PORT": str(port),
            "N8N_LISTEN_ADDRESS": "127.0.0.1",
            "N8N_HOST": "127.0.0.1",
            "WEBHOOK_URL": f"http://127.0.0.1:{port}/",
        }
    )
    if broker_port is not None:
        # The task runners' broker defaults to 5679: a second n8n (or a busy port) would clash.
        env["N8N_RUNNERS_BROKER_PORT"] = str(broker_port)
    return env


def _cli(args: list[str], user_folder: Path, port: int, log: Path) -> None:
    with log.open("ab") as out:
        out.write(f"\n$ n8n {' '.join(args)}\n".encode())
        out.flush()
        result = subprocess.run(
            [str(N8N_BIN), *args], env=n8n_env(user_folder, port), stdout=out, stderr=subprocess.STDOUT, timeout=300, check=False
        )
    if result.returncode != 0:
        raise RuntimeError(f"n8n {args[0]} failed (exit {result.returncode}); see {log}")


def workflow_ids() -> list[str]:
    return [json.loads((WORKFLOWS_DIR / name).read_text())["id"] for name in WORKFLOW_FILES]


def prepare(user_folder: Path, credentials: Path, port: int = 5678) -> Path:
    """Import the header-auth credential and the example workflows, and publish them."""
    user_folder.mkdir(parents=True, exist_ok=True)
    log = user_folder / "n8n.log"
    _cli(["import:credentials", f"--input={credentials}"], user_folder, port, log)
    staged = user_folder / "workflows"
    staged.mkdir(exist_ok=True)
    for name in WORKFLOW_FILES:
        shutil.copyfile(WORKFLOWS_DIR / name, staged / name)
    _cli(["import:workflow", "--separate", f"--input={staged}"], user_folder, port, log)
    for workflow_id in workflow_ids():
        _cli(["publish:workflow", f"--id={workflow_id}"], user_folder, port, log)
    return log


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def webhook_live(url: str) -> bool:
    """A published webhook without its header answers 403; 404 means it is not registered yet."""
    # Only ever our own http://127.0.0.1 base URL.
    request = urllib.request.Request(url, data=b"{}", method="POST", headers={"Content-Type": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5):  # noqa: S310
            return True
    except urllib.error.HTTPError as exc:
        return exc.code != 404
    except OSError:
        return False


@contextmanager
def running(user_folder: Path, port: int, *, timeout: float = 240.0, paths: tuple[str, ...] = ("bitworks-reply",)) -> Iterator[str]:
    """Start n8n, wait until the given webhook paths answer, yield its base URL, stop it."""
    log = user_folder / "n8n.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(N8N_BIN), "start"],
            env=n8n_env(user_folder, port, free_port()),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        pending = list(paths)
        while pending:
            if process.poll() is not None:
                raise RuntimeError(f"n8n exited with {process.returncode}; see {log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"n8n webhooks {pending} not live after {timeout:.0f} s; see {log}")
            pending = [p for p in pending if not webhook_live(f"{base}/webhook/{p}")]
            if pending:
                time.sleep(0.5)  # poll interval, not synchronisation: the loop waits on the condition
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="npm install n8n and build sqlite3 into .local/n8n")
    run = sub.add_parser("run", help="import credentials and workflows, publish, start")
    run.add_argument("--port", type=int, default=5678)
    run.add_argument("--credentials", type=Path, default=WORKFLOWS_DIR / "credentials.example.json")
    run.add_argument("--user-folder", type=Path, default=ROOT / ".local" / "n8n-data")
    args = parser.parse_args(argv)

    if args.command == "install" or not installed():
        print(f"installing n8n {VERSION} into {INSTALL_DIR} (several minutes) ...", flush=True)
        print(f"done in {install():.0f} s", flush=True)
        if args.command == "install":
            return 0
    print(f"importing and publishing the workflows into {args.user_folder} ...", flush=True)
    prepare(args.user_folder, args.credentials, args.port)
    with running(args.user_folder, args.port, paths=("bitworks-reply", "bitworks-callback")) as base:
        print(
            f"n8n is up: {base}  (webhooks {base}/webhook/bitworks-reply and {base}/webhook/bitworks-callback; "
            f"log {args.user_folder / 'n8n.log'}). Ctrl-C stops it.",
            flush=True,
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
