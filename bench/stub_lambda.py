"""A tiny stand-in for the Lambda Invoke API on loopback: answers 202 to every POST (async invoke).

    python -m bench.stub_lambda   -> prints "stub ready http://127.0.0.1:PORT" and serves until killed.
Runs in its own process so that it does not share the measured process's GIL.
"""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # a fan-out opens up to 32 connections at once (the default backlog is 5)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real endpoint

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "0")
        self.send_header("x-amzn-RequestId", "bench")
        self.end_headers()


def main() -> None:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    print(f"stub ready http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
