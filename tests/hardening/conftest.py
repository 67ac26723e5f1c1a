"""Hardening harness: one emulator for the whole run (the unchanged template and handlers on
loopback), its log output captured in a file, the demo assistant and a scriptable n8n stub as
n8n, figures printed at the end and written to tests/artifacts/reliability.json."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.hardening.support import FIGURES, SECRETS, Http, secret
from tests.support.template import TEMPLATE

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = ROOT / "tests" / "artifacts" / "reliability.json"
_started = time.monotonic()


@pytest.fixture(scope="session")
def log_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Everything logged during the run: the emulator (functions' stdout/stderr, its own lines)
    and the root logger of the pytest process."""
    base = Path(tmp_path_factory.mktemp("logs"))
    files = {"emulator": base / "emulator.log", "pytest": base / "pytest.log"}
    handler = logging.FileHandler(files["pytest"])
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s %(args)s"))
    handler.setLevel(logging.DEBUG)
    # Root only: a foreign handler on the Powertools logger ("bitworks") would become its
    # registered handler and break append_keys; its in-process lines go to captured stdout.
    loggers = [logging.getLogger()]
    for lg in loggers:
        lg.addHandler(handler)
    yield files
    for lg in loggers:
        lg.removeHandler(handler)
    handler.close()


@pytest.fixture(scope="session")
def assistant() -> str:
    from tools.demo_assistant import serve

    server = serve(port=0)
    yield f"http://127.0.0.1:{server.server_address[1]}/webhook/demo"
    server.shutdown()


@pytest.fixture(scope="session")
def n8n():
    from tests.support.n8n_stub import N8nStub

    stub = N8nStub().start()
    yield stub
    for req in stub.requests:  # reply tokens the run handed to "n8n"
        try:
            secret(req.json()["reply"]["token"])
        except (ValueError, KeyError, TypeError):
            pass
    stub.stop()


@pytest.fixture(scope="session")
def hstack(database_url: str, assistant: str, log_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    import devserver
    from tools.dev import emulator_env

    env_file = Path(tmp_path_factory.mktemp("hemulator")) / "env.json"
    env = emulator_env(
        database_url,
        os.environ["JWT_SECRET"],
        assistant,
        "http://127.0.0.1:0",
        PASSWORD_SCRYPT_N="16",
        N8N_BACKOFF_BASE="0",
        N8N_CONNECT_TIMEOUT="1",
        N8N_READ_TIMEOUT="1.5",
        N8N_MAX_ATTEMPTS="3",
        DB_POOL_SIZE="2",
        POWERTOOLS_LOG_LEVEL="INFO",  # log as much as production does: the secret check reads it all
        STAGE="test",
    )
    env_file.write_text(json.dumps(env))
    secret(os.environ["JWT_SECRET"])
    stream = open(log_files["emulator"], "a", buffering=1)
    handle = devserver.start(
        str(TEMPLATE),
        env_vars=str(env_file),
        async_retry_delays=(0.2, 0.4),
        schedules=False,
        log_stream=stream,
        reload_interval=0,
        integration_timeout=30,
    )
    yield handle
    handle.stop()
    stream.close()


@pytest.fixture
def hhttp(hstack, db) -> Http:
    return Http(hstack.http_url)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not FIGURES:
        return
    FIGURES.setdefault("run", {}).update(
        {
            "wall_seconds": round(time.monotonic() - _started, 1),
            "exit_status": int(exitstatus),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(json.dumps(FIGURES, indent=2, sort_keys=True, default=str) + "\n")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    tr = terminalreporter
    tr.section("hardening figures")
    for suite, values in sorted(FIGURES.items()):
        tr.write_line(f"{suite}:")
        for key, value in sorted(values.items()):
            tr.write_line(f"    {key}: {value}")
    tr.write_line(f"(written to {ARTIFACT.relative_to(ROOT)}; secrets tracked: {len(SECRETS)})")
