"""The example workflows in n8n/ against a real n8n 2.8.4 (tools/n8n_local.py).

Skipped unless n8n is installed under .local/n8n (`python -m tools.n8n_local install`), or
BITWORKS_N8N=1 asks for the install (several minutes). The payload is the n8n contract's shape.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tools import n8n_local

pytestmark = pytest.mark.n8n
HEADER_NAME = "X-Bitworks-Key"


@pytest.fixture(scope="module")
def n8n(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not n8n_local.installed():
        if os.environ.get("BITWORKS_N8N") != "1":
            pytest.skip("n8n is not installed under .local/n8n (python -m tools.n8n_local install, or BITWORKS_N8N=1)")
        n8n_local.install()
    folder = tmp_path_factory.mktemp("n8n")
    header_value = secrets.token_urlsafe(24)
    template = json.loads((n8n_local.WORKFLOWS_DIR / "credentials.example.json").read_text())
    template[0]["data"] = {"name": HEADER_NAME, "value": header_value}
    credentials = folder / "credentials.json"
    credentials.write_text(json.dumps(template))
    port = n8n_local.free_port()
    n8n_local.prepare(folder / "home", credentials, port)
    with n8n_local.running(folder / "home", port, paths=("bitworks-reply", "bitworks-callback")) as base:
        yield {"base": base, "header_value": header_value, "log": folder / "home" / "n8n.log"}


def contract_payload(content: str, reply_url: str, token: str) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "event": "message.created",
        "delivery_id": str(uuid.uuid4()),
        "client": {"id": str(uuid.uuid4()), "name": "Demo shop"},
        "conversation": {"id": str(uuid.uuid4()), "title": "Shipping", "user_id": str(uuid.uuid4())},
        "message": {"id": str(uuid.uuid4()), "seq": 3, "role": "user", "content": content, "timestamp": now},
        "context": {
            "context_window": 10,
            "parameters": {"locale": "fi"},
            "messages": [
                {"role": "user", "content": "Hi", "timestamp": now},
                {"role": "assistant", "content": "Hello! How can I help?", "timestamp": now},
            ],
        },
        "template": {"id": str(uuid.uuid4()), "name": "Support", "content": "You are a helpful shop assistant."},
        "reply": {"url": reply_url, "token": token, "expires_at": now},
    }


def post(url: str, payload: dict[str, Any], header_value: str | None) -> tuple[int, Any]:
    body = json.dumps(payload).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Bitworks-Timestamp": timestamp,
        "X-Bitworks-Delivery": payload["delivery_id"],
        "X-Bitworks-Signature": "sha256=" + hmac.new(b"secret", timestamp.encode() + b"." + body, hashlib.sha256).hexdigest(),
    }
    if header_value is not None:
        headers[HEADER_NAME] = header_value
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def test_webhook_reply_workflow_answers_output(n8n):
    url = f"{n8n['base']}/webhook/bitworks-reply"
    payload = contract_payload('Do you ship to "Finland"?', "http://127.0.0.1:9/n8n/replies", "unused")
    status, body = post(url, payload, n8n["header_value"])
    assert status == 200, body
    assert body == {"output": 'You said: Do you ship to "Finland"? (2 earlier messages in context)'}


def test_webhook_refuses_a_missing_or_wrong_header(n8n):
    url = f"{n8n['base']}/webhook/bitworks-reply"
    payload = contract_payload("hi", "http://127.0.0.1:9/n8n/replies", "unused")
    assert post(url, payload, None)[0] == 403
    assert post(url, payload, "wrong-value")[0] == 403


class _Replies(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]
    arrived: threading.Event

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        self.received.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(raw or b"null")})
        answer = json.dumps({"message": {"id": str(uuid.uuid4()), "role": "assistant"}}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        self.arrived.set()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def reply_server() -> Any:
    handler = type("Replies", (_Replies,), {"received": [], "arrived": threading.Event()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, handler
    finally:
        server.shutdown()
        server.server_close()


def test_callback_workflow_posts_the_reply_with_the_bearer_token(n8n, reply_server):
    server, handler = reply_server
    reply_url = f"http://127.0.0.1:{server.server_address[1]}/n8n/replies"
    token = "rt_" + secrets.token_urlsafe(24)
    payload = contract_payload("Where is my order 1234?", reply_url, token)

    status, body = post(f"{n8n['base']}/webhook/bitworks-callback", payload, n8n["header_value"])
    assert status == 200 and body == {"message": "Workflow was started"}, body

    assert handler.arrived.wait(timeout=60), f"n8n did not call back; see {n8n['log']}"
    [call] = handler.received
    assert call["path"] == "/n8n/replies"
    headers = {k.lower(): v for k, v in call["headers"].items()}
    assert headers["authorization"] == f"Bearer {token}"
    assert headers["content-type"].startswith("application/json")
    assert call["body"] == {"message_id": payload["message"]["id"], "content": "You said: Where is my order 1234?"}


def test_workflow_files_are_importable_as_shipped():
    """Fixed ids, the shared credential reference, and a placeholder (never a real) header value."""
    ids = n8n_local.workflow_ids()
    assert len(set(ids)) == 2 and all(len(i) == 16 and i.isalnum() for i in ids)
    credentials = json.loads(Path(n8n_local.WORKFLOWS_DIR / "credentials.example.json").read_text())
    assert credentials[0]["type"] == "httpHeaderAuth" and "replace" in credentials[0]["data"]["value"]
    for name in n8n_local.WORKFLOW_FILES:
        workflow = json.loads((n8n_local.WORKFLOWS_DIR / name).read_text())
        webhook = next(n for n in workflow["nodes"] if n["type"] == "n8n-nodes-base.webhook")
        assert webhook["parameters"]["authentication"] == "headerAuth"
        assert webhook["credentials"]["httpHeaderAuth"]["id"] == credentials[0]["id"]
