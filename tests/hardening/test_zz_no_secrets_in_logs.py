"""Runs last (file order): no token, ticket, reply token, API key, signing secret, n8n header
value or JWT secret that this run created appears in any log line — the emulator's whole output
(every function's stdout/stderr) and the pytest process's loggers."""

from __future__ import annotations

import pytest

from tests.hardening.support import SECRETS, record

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_no_secret_in_any_log_line(hstack, log_files, n8n):
    for req in n8n.requests:
        try:
            SECRETS.add(req.json()["reply"]["token"])
            for name in ("x-n8n-key",):
                if req.headers.get(name):
                    SECRETS.add(req.headers[name])
        except (ValueError, KeyError, TypeError):
            pass
    texts = {name: path.read_text(errors="replace") if path.exists() else "" for name, path in log_files.items()}
    lines = sum(t.count("\n") for t in texts.values())
    assert lines > 100, "the logs were not captured"
    found = [(name, s[:12] + "…") for s in SECRETS for name, t in texts.items() if s in t]
    record("logs", log_lines_scanned=lines, secrets_checked=len(SECRETS), secrets_found=len(found))
    assert not found, found[:10]
