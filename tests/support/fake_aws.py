"""A real HTTP endpoint for the AWS APIs the layer calls by hand (bitworks.awscall): Lambda
Invoke and the API Gateway Management API (@connections POST and DELETE).

It records what arrives (the signed request, decoded) and answers like AWS: 202 for an Event
invoke, 200 for a post, 410 GoneException for connections in `gone`, and the status given in
`failing` (connection id -> status) or `invoke_status`. `use()` points the layer at it through
the same variables the emulator sets (AWS_ENDPOINT_URL_LAMBDA, WS_MANAGEMENT_ENDPOINT)."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

STAGE = "prod"


class BackloggedServer(ThreadingHTTPServer):
    request_queue_size = 128  # a fan-out opens up to 32 connections at once (the default backlog is 5)
    daemon_threads = True


def serve(handler: type[BaseHTTPRequestHandler]) -> tuple[BackloggedServer, str]:
    """A loopback HTTP server in a daemon thread, and its base URL."""
    httpd = BackloggedServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def stop(httpd: ThreadingHTTPServer) -> None:
    httpd.shutdown()
    httpd.server_close()


class FakeAws:
    def __init__(self) -> None:
        self.invokes: list[dict[str, Any]] = []
        self.invoked_functions: list[str] = []
        self.pushes: list[tuple[str, dict[str, Any]]] = []
        self.raw_pushes: list[tuple[str, bytes]] = []
        self.deleted: list[str] = []
        self.gone: set[str] = set()
        self.failing: dict[str, int] = {}
        self.invoke_status = 202
        self.requests = 0
        self.unsigned: list[str] = []
        self._lock = threading.Lock()
        self._saved: dict[str, str | None] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self, status: int, code: str = "") -> None:
                body = json.dumps({"message": code}).encode() if status >= 300 else b""
                self.send_response(status)
                if code:
                    self.send_header("x-amzn-ErrorType", code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with fake._lock:
                    fake.requests += 1
                    if not (self.headers.get("Authorization") or "").startswith("AWS4-HMAC-SHA256 Credential="):
                        fake.unsigned.append(self.path)
                parts = self.path.split("/")
                if self.command == "POST" and self.path.startswith("/2015-03-31/functions/"):
                    name = unquote(parts[3])
                    if fake.invoke_status >= 300:
                        return self._reply(fake.invoke_status, "ServiceException")
                    with fake._lock:
                        fake.invoked_functions.append(name)
                        fake.invokes.append(json.loads(data or b"{}"))
                    return self._reply(202)
                if len(parts) == 4 and parts[2] == "@connections":
                    connection_id = unquote(parts[3])
                    if self.command == "DELETE":
                        with fake._lock:
                            fake.deleted.append(connection_id)
                        return self._reply(410, "GoneException") if connection_id in fake.gone else self._reply(204)
                    if connection_id in fake.gone:
                        return self._reply(410, "GoneException")
                    status = fake.failing.get(connection_id)
                    if status:
                        return self._reply(status, "LimitExceededException" if status == 429 else "InternalServerErrorException")
                    with fake._lock:
                        fake.raw_pushes.append((connection_id, data))
                        fake.pushes.append((connection_id, json.loads(data)))
                    return self._reply(200)
                return self._reply(404, "UnknownOperationException")

            do_POST = do_DELETE = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = BackloggedServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self.management_url = f"{self.url}/{STAGE}"

    def start(self) -> FakeAws:
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def use(self) -> FakeAws:
        """Point the layer at this endpoint (restored by stop())."""
        from bitworks.config import get_settings

        for name, value in (("AWS_ENDPOINT_URL_LAMBDA", self.url), ("WS_MANAGEMENT_ENDPOINT", self.management_url)):
            self._saved[name] = os.environ.get(name)
            os.environ[name] = value
        get_settings.cache_clear()
        return self

    def stop(self) -> None:
        from bitworks.config import get_settings

        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()
        stop(self._httpd)

    # -- reading ---------------------------------------------------------------------------------
    def events(self, connection_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [event for cid, event in self.pushes if cid == connection_id]

    def take_invokes(self) -> list[dict[str, Any]]:
        with self._lock:
            taken, self.invokes[:] = list(self.invokes), []
        return taken
