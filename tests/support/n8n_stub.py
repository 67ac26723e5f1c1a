"""Test doubles at the process edge of an AI turn.

- `N8nStub`: a real HTTP server on 127.0.0.1 standing in for an n8n webhook. Each request takes
  the next scripted answer (or the default) and is recorded with its headers and exact body.
- `AwsRecorder`: a real HTTP endpoint for Lambda Invoke and the API Gateway Management API
  (tests.support.fake_aws): invokes answer 202, posts 200 or, for connections in `gone`, 410
  GoneException; everything is recorded.

Test modules load this as a plugin (pytest_plugins) after importing helpers from it, so pytest's
assertion rewriting is off here (PYTEST_DONT_REWRITE); its asserts carry explicit messages.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.support.fake_aws import FakeAws


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang: float = 0.0  # seconds to stall before answering (ends early when the stub stops)


def reply_json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})


def reply_raw(body: bytes | str, status: int = 200, content_type: str = "text/html") -> Answer:
    return Answer(status, body.encode() if isinstance(body, str) else body, {"Content-Type": content_type})


def reply_hang(seconds: float) -> Answer:
    return Answer(200, b'{"output": "too late"}', {"Content-Type": "application/json"}, hang=seconds)


Script = Answer | Callable[[Recorded], Answer]


class N8nStub:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.script: list[Script] = []
        self.default: Script = lambda req: reply_json({"output": f"echo: {req.json()['message']['content']}"})
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                recorded = Recorded("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with stub._cond:
                    stub.requests.append(recorded)
                    step = stub.script.pop(0) if stub.script else stub.default
                    stub._cond.notify_all()
                answer = step(recorded) if callable(step) else step
                if answer.hang:
                    stub._stopping.wait(answer.hang)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:
                    pass  # the client gave up (timeout): nothing to answer

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name="n8n-stub", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/webhook/bitworks"

    def start(self) -> N8nStub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def then(self, *steps: Script) -> N8nStub:
        with self._cond:
            self.script.extend(steps)
        return self

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Recorded]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"n8n stub got {len(self.requests)} requests, expected {count}")
                self._cond.wait(left)
            return list(self.requests)


def closed_port_url() -> str:
    """A loopback URL nobody listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/webhook/none"


class AwsRecorder(FakeAws):
    """The AWS side of a turn: a real local HTTP endpoint (tests.support.fake_aws) that the layer's
    Lambda invokes and @connections posts go to; records invokes (payload dicts) and pushes."""

    def start(self) -> AwsRecorder:
        super().start()
        self.use()
        return self


class ChatScenario:
    """One client (webhook = the stub, header auth, signing secret), one user with one open
    WebSocket connection, one conversation; helpers to send, drive the dispatches and inspect."""

    AUTH_HEADER = ("X-N8N-Key", "header-secret-value")

    def __init__(self, factory: Any, api_client: Any, aws: AwsRecorder, n8n: N8nStub | None, **client: Any) -> None:
        import uuid

        from bitworks.db import session_scope
        from bitworks.models import Connection, Conversation

        values: dict[str, Any] = {
            "n8n_webhook_url": n8n.url if n8n else None,
            "n8n_auth_header_name": self.AUTH_HEADER[0],
            "n8n_auth_header_value": self.AUTH_HEADER[1],
        }
        values.update(client)
        self.api, self.aws, self.n8n = api_client, aws, n8n
        self.client = factory.client(**values)
        self.user = factory.user(self.client)
        self.token = factory.token(self.user)
        self.connection_id = f"conn-{uuid.uuid4().hex[:12]}"
        with session_scope() as session:
            conversation = Conversation(id=uuid.uuid4(), client_id=self.client.id, user_id=self.user.id, title="Order help")
            session.add(conversation)
            session.flush()
            session.add(Connection(connection_id=self.connection_id, user_id=self.user.id, client_id=self.client.id))
        self.conversation_id = conversation.id

    def send(self, content: str, client_message_id: str | None = None, token: str | None = None) -> tuple[int, Any]:
        body: dict[str, Any] = {"content": content}
        if client_message_id is not None:
            body["client_message_id"] = client_message_id
        path = f"/conversations/{self.conversation_id}/messages"
        status, data, _ = self.api.call("POST", path, token=token or self.token, body=body)
        return status, data

    def dispatch(self, payload: dict[str, Any], name: str = "DispatchFunction") -> dict[str, Any]:
        from tests.support.events import LambdaContext
        from tests.support.template import load_handler

        return load_handler("DispatchFunction")(payload, LambdaContext(name, timeout_ms=60_000))

    def drive(self, limit: int = 200) -> list[str]:
        """Run every dispatch the code invoked (and the ones those invoke) until none is left."""
        results = []
        for _ in range(limit):
            pending = self.aws.take_invokes()
            if not pending:
                return results
            for payload in pending:
                results.append(self.dispatch(payload)["result"])
        raise AssertionError("dispatches did not settle")

    def events(self) -> list[dict[str, Any]]:
        return self.aws.events(self.connection_id)

    def messages(self) -> list[Any]:
        from sqlalchemy import select

        from bitworks.db import session_scope
        from bitworks.models import Message

        with session_scope() as session:
            stmt = select(Message).where(Message.conversation_id == self.conversation_id).order_by(Message.seq)
            return list(session.scalars(stmt))

    def conversation(self) -> Any:
        from bitworks.db import session_scope
        from bitworks.models import Conversation

        with session_scope() as session:
            return session.get(Conversation, self.conversation_id)

    def assert_ended(self, outcome: str, message_id: Any = None) -> None:
        """The user got exactly one reply or exactly one message.failed for the turn, and typing
        off was the last event; the conversation holds no turn."""
        events = self.events()
        replies = [e for e in events if e["type"] == "message.created" and e["message"]["role"] == "assistant"]
        failures = [e for e in events if e["type"] == "message.failed"]
        if message_id is not None:
            replies = [e for e in replies if e["message"]["in_reply_to"] == str(message_id)]
            failures = [e for e in failures if e["message_id"] == str(message_id)]
        if outcome == "replied":
            assert len(replies) == 1 and not failures, events
        else:
            assert len(failures) == 1 and not replies, events
            assert failures[0]["error"]["code"] == outcome, failures
        assert events[-1] == {"type": "typing", "conversation_id": str(self.conversation_id), "state": "off"}, events
        assert self.conversation().active_message_id is None


# -- pytest fixtures (import them into a test module) ---------------------------------------------
@pytest.fixture
def n8n() -> Any:
    stub = N8nStub().start()
    yield stub
    stub.stop()


@pytest.fixture
def aws(db: Any) -> Any:
    recorder = AwsRecorder().start()
    yield recorder
    recorder.stop()


@pytest.fixture
def chat_settings(monkeypatch: Any) -> Any:
    """set(NAME=value, ...): override settings from the environment for one test."""
    from bitworks.config import get_settings

    def apply(**env: Any) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, str(value))
        get_settings.cache_clear()

    yield apply
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def chat(factory: Any, api_client: Any, aws: AwsRecorder, n8n: N8nStub) -> ChatScenario:
    return ChatScenario(factory, api_client, aws, n8n)
