"""Browser suite: Debian's chromium driven by Python playwright against the whole local stack.

The stack: the local emulator (devserver) serving template.yaml on free ports, with web/ as static
files under /web/ on the HTTP port (so the page origin is the API origin; the WebSocket API is
another port), the test database, a seeded demo client, and a stand-in for n8n.

Skips with a clear message when /usr/bin/chromium or the playwright package is missing
(install: `apt-get install -y chromium` and `pip install -r requirements-dev.txt`; never
`playwright install`, which downloads another browser).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib import request as urlrequest

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("BITWORKS_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"
SCREENSHOTS = ROOT / "docs" / "screenshots"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Contents that make the stand-in assistant hold its answer until the test releases it, or fail.
HOLD = "[hold]"
FAIL_ONCE = "[fail-once]"


def _require_browser() -> None:
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("browser tests need the playwright Python package (pip install -r requirements-dev.txt)")


# -- a stand-in for n8n (the demo assistant's answers, plus a gate and a failure switch) ----------
class Assistant:
    """tools.demo_assistant's answers, synchronously in the webhook response like n8n's AI Agent.
    A message containing HOLD is answered only after release(); one containing FAIL_ONCE gets a
    400 the first time (a non-retryable failure: the turn fails at once) and an answer after."""

    def __init__(self) -> None:
        from tools.demo_assistant import _Handler, answer

        self.gate = threading.Event()
        self.gate.set()  # open until arm()
        self.held = threading.Event()
        self.failed: set[str] = set()
        outer = self

        class Handler(_Handler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                payload = json.loads(body or b"{}")
                message = payload.get("message", {})
                content = str(message.get("content", ""))
                if HOLD in content:
                    outer.held.set()
                    outer.gate.wait(30)
                if FAIL_ONCE in content and message.get("id") not in outer.failed:
                    outer.failed.add(str(message.get("id")))
                    self._send(400, {"message": "stand-in failure for the browser tests"})
                    return
                self._send(200, {"output": answer(payload)})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="browser-assistant", daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhook/demo-assistant"

    def arm(self) -> None:
        """The next HOLD message waits until release()."""
        self.gate.clear()
        self.held.clear()

    def release(self) -> None:
        self.gate.set()

    def stop(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


# -- the stack -------------------------------------------------------------------------------------
class Stack:
    def __init__(self, handle: Any, creds: dict[str, Any], assistant: Assistant) -> None:
        self.handle = handle
        self.http_url: str = handle.http_url
        self.ws_url: str = handle.ws_url
        self.aws_url: str = handle.aws_url
        self.creds = creds
        self.client_id: str = creds["client_id"]
        self.assistant = assistant

    def url(self, page: str) -> str:
        return f"{self.http_url}/web/{page}"

    def demo_url(self) -> str:
        """The demo page with this stack's client and WebSocket port (the API is the page origin)."""
        return self.url(f"demo.html?client={self.client_id}&ws={self.ws_url}")

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urlrequest.Request(self.http_url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urlrequest.urlopen(req, timeout=15) as res:
                text = res.read().decode()
                return res.status, json.loads(text) if text else None
        except urlrequest.HTTPError as exc:
            text = exc.read().decode()
            return exc.code, json.loads(text) if text else None

    def login(self, role: str) -> str:
        body = {"email": self.creds[role]["email"], "password": self.creds[role]["password"]}
        if role != "superadmin":
            body["client_id"] = self.client_id
        status, data = self.call("POST", "/auth/login", body)
        assert status == 200, data
        return str(data["access_token"])

    def connection_ids(self) -> list[str]:
        ws = self.handle.emulator.ws
        return [cid for cid, conn in list(ws.connections.items()) if not conn.closed]

    def drop_all_connections(self) -> int:
        """Close every WebSocket from the server side through the @connections management API."""
        ids = self.connection_ids()
        for cid in ids:
            req = urlrequest.Request(f"{self.aws_url}/@connections/{cid}", method="DELETE")
            with urlrequest.urlopen(req, timeout=10) as res:
                assert res.status in (200, 204)
        return len(ids)

    def wait_until(self, predicate: Any, timeout: float = 15.0, what: str = "condition") -> Any:
        """Poll a server-side condition with a deadline (not a sleep for synchronisation)."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)


@pytest.fixture(scope="package")
def stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _require_browser()
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    import devserver
    from tests.support.cleanup import truncate
    from tools.dev import emulator_env
    from tools.seed import seed

    tmp = tmp_path_factory.mktemp("browser-stack")
    assistant = Assistant()
    env_file = tmp / "env.json"
    jwt_secret = os.environ["JWT_SECRET"]
    env = emulator_env(database_url, jwt_secret, assistant.url, "http://127.0.0.1", PASSWORD_SCRYPT_N="16", POWERTOOLS_LOG_LEVEL="WARNING")
    env_file.write_text(json.dumps(env))
    _mkdir(ARTIFACTS)
    log_stream = open(ARTIFACTS / "browser-emulator.log", "w")
    handle = devserver.start(
        str(ROOT / "template.yaml"),
        env_vars=str(env_file),
        static=[f"{ROOT / 'web'}:/web/"],
        async_retry_delays=(0.5, 1.0),
        schedules=False,
        reload_interval=0,
        log_stream=log_stream,
    )
    engine = create_engine(database_url)
    try:
        truncate(engine)
        with Session(engine) as session:
            creds = seed(session, tmp / "demo-credentials.json", assistant.url, origins=[handle.http_url])
            session.commit()
        stack = Stack(handle, creds, assistant)
        _warm_up(stack)
        yield stack
    finally:
        engine.dispose()
        handle.stop()
        assistant.stop()
        log_stream.close()


# Functions a page calls at the same moment (after sign-in: a ticket, the list, the socket). Their
# cold starts run one after the other here: concurrent cold starts on a busy 2-core machine can run
# past Lambda's 10 s init limit in the emulator. The rest start cold one at a time during the tests.
_WARM = [
    ("POST", "/auth/ws-ticket"),
    ("GET", "/conversations"),
    ("POST", "/conversations"),
    ("GET", "/conversations/00000000-0000-0000-0000-000000000000/messages"),
]


def _warm_up(stack: Stack) -> None:
    calls = [("POST", "/auth/login", {"email": "warm@up.invalid", "password": "x", "client_id": stack.client_id})]
    calls += [(method, path, {} if method != "GET" else None) for method, path in _WARM]
    for method, path, body in calls:
        for _attempt in range(3):  # a cold start past the init limit answers 500; the next one is warmer
            if stack.call(method, path, body)[0] != 500:
                break
    _touch_websocket(stack.ws_url)


def _touch_websocket(ws_url: str) -> None:
    """A handshake with a bad ticket: warms the $connect function (and is rejected)."""
    import asyncio

    import websockets

    async def go() -> None:
        try:
            async with websockets.connect(f"{ws_url}?ticket=warm-up", open_timeout=15):
                pass
        except Exception:
            pass

    asyncio.run(go())


def _mkdir(path: Path) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return True


@pytest.fixture(scope="package")
def browser(stack: Stack) -> Iterator[Any]:
    # Package scope: Playwright's sync API keeps an asyncio loop running in this thread while it
    # is open, which would break asyncio.run() in every suite collected after this one.
    from playwright.sync_api import expect, sync_playwright

    # Generous: the first call of each function is a cold start (seconds on a busy 2-core machine).
    expect.set_options(timeout=20000)

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh context per test (own sessionStorage); fails on any dialog and on page errors."""
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    context.set_default_timeout(20000)
    pg = context.new_page()
    pg.dialogs = []  # type: ignore[attr-defined]
    pg.errors = []  # type: ignore[attr-defined]

    def on_dialog(dialog: Any) -> None:
        pg.dialogs.append(dialog.message)  # type: ignore[attr-defined]
        dialog.dismiss()

    pg.on("dialog", on_dialog)
    pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        _mkdir(ARTIFACTS)
        try:
            pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}-final.png"), full_page=True)
        except Exception:
            pass
        context.close()


@pytest.fixture
def shot() -> Any:
    return save_screenshot


def save_screenshot(target: Any, name: str, *, docs: bool = False, full_page: bool = False) -> None:
    """Artefact under tests/artifacts/ (git-ignored); with docs=True also docs/screenshots/NAME."""
    _mkdir(ARTIFACTS)
    target.screenshot(path=str(ARTIFACTS / name), **({"full_page": True} if full_page else {}))
    if docs:
        _mkdir(SCREENSHOTS)
        shutil.copyfile(ARTIFACTS / name, SCREENSHOTS / name)
