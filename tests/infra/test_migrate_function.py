"""functions/migrate/app.py: the custom resource answers CloudFormation on every path."""

from __future__ import annotations

import importlib.util
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from tests.infra._support import ROOT


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("migrate_app", ROOT / "functions" / "migrate" / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def response_url() -> Any:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/response", received
    server.shutdown()


def _event(url: str, kind: str) -> dict[str, Any]:
    return {
        "RequestType": kind,
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1",
        "RequestId": "r1",
        "LogicalResourceId": "DatabaseMigration",
        "PhysicalResourceId": "bitworks-database-migration",
        "ResourceProperties": {"MigrationsHead": "x"},
    }


def test_delete_succeeds_without_the_database(response_url: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    url, received = response_url
    app = _load()
    monkeypatch.setattr(app, "run", lambda event: pytest.fail("Delete must not touch the database"))
    app.handler(_event(url, "Delete"), None)
    assert received[0]["Status"] == "SUCCESS" and received[0]["PhysicalResourceId"] == "bitworks-database-migration"


def test_failure_is_reported_truncated(response_url: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    url, received = response_url
    app = _load()

    def boom(event: Any) -> Any:
        raise RuntimeError("alembic says no " + "x" * 5000)

    monkeypatch.setattr(app, "run", boom)
    app.handler(_event(url, "Update"), None)
    assert received[0]["Status"] == "FAILED"
    assert "RuntimeError: alembic says no" in received[0]["Reason"] and len(received[0]["Reason"]) <= 1000


def test_create_upgrades_and_creates_the_superadmin_once(response_url: Any, db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    url, received = response_url
    app = _load()
    import bitworks.secrets

    monkeypatch.setenv("SUPERADMIN_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:1:secret:sa")
    monkeypatch.setattr(bitworks.secrets, "get_secret_json", lambda arn: {"email": "Root@Example.com", "password": "pw-" + "y" * 20})
    app.handler(_event(url, "Create"), None)
    app.handler(_event(url, "Update"), None)
    assert [r["Status"] for r in received] == ["SUCCESS", "SUCCESS"], received
    assert received[0]["Data"]["Migration"] in ("current", "upgraded")
    assert [r["Data"]["Superadmin"] for r in received] == ["created", "exists"]
    assert "pw-" not in json.dumps(received)
    from sqlalchemy import text

    with db.connect() as conn:
        rows = conn.execute(text("SELECT role, client_id FROM users WHERE email = 'root@example.com'")).all()
    assert rows == [("superadmin", None)]
