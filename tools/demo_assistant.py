"""A clearly labelled stand-in for n8n, so that chat works locally at once without an n8n.

It speaks the n8n contract: receives the signed payload, checks the signature when it knows the
secret, and answers in the webhook response ({"output": ...}) like n8n's AI Agent node.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LABEL = "[demo assistant — not n8n]"


def answer(payload: dict[str, Any]) -> str:
    content = str(payload.get("message", {}).get("content", ""))
    history = payload.get("context", {}).get("messages", [])
    template = payload.get("template") or {}
    hint = f" (template: {template.get('name')})" if template.get("name") else ""
    return (
        f"{LABEL} You said: “{content[:500]}”. I can see {len(history)} earlier message(s) in the "
        f"context window{hint}. Point N8N_WEBHOOK_URL at a real n8n for real answers."
    )


class _Handler(BaseHTTPRequestHandler):
    server_version = "DemoAssistant/1.0"
    signing_secrets: dict[str, str] = {}

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        try:
            payload = json.loads(body)
        except ValueError:
            self._send(400, {"message": "invalid JSON"})
            return
        secret = self.signing_secrets.get(str(payload.get("client", {}).get("id")))
        if secret:
            timestamp = self.headers.get("X-Bitworks-Timestamp", "")
            expected = "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, self.headers.get("X-Bitworks-Signature", "")):
                self._send(401, {"message": "bad signature"})
                return
        self._send(200, {"output": answer(payload)})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve(host: str = "127.0.0.1", port: int = 0, signing_secrets: dict[str, str] | None = None) -> ThreadingHTTPServer:
    handler = type("DemoHandler", (_Handler,), {"signing_secrets": dict(signing_secrets or {})})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="demo-assistant", daemon=True).start()
    return server
