"""End-to-end: the unchanged template, handlers and boto3 calls served by the local emulator on
free loopback ports, against the test database, with the demo assistant standing in for n8n."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.template import TEMPLATE

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def assistant():
    from tools.demo_assistant import serve

    server = serve(port=0)
    yield f"http://127.0.0.1:{server.server_address[1]}/webhook/demo"
    server.shutdown()


@pytest.fixture(scope="session")
def stack(database_url: str, assistant: str, tmp_path_factory: pytest.TempPathFactory):
    import devserver
    from tools.dev import emulator_env

    env_file = Path(tmp_path_factory.mktemp("emulator")) / "env.json"
    env = emulator_env(
        database_url,
        os.environ["JWT_SECRET"],
        assistant,
        "http://127.0.0.1:0",
        PASSWORD_SCRYPT_N="16",
        N8N_BACKOFF_BASE="0",
        DB_POOL_SIZE="2",
        POWERTOOLS_LOG_LEVEL="WARNING",
        STAGE="test",
    )
    env_file.write_text(json.dumps(env))
    handle = devserver.start(str(TEMPLATE), env_vars=str(env_file), async_retry_delays=(0.2, 0.4), schedules=False)
    yield handle
    handle.stop()


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(interval)


class Http:
    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()

    def __call__(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.session.request(method, self.base + path, headers=headers, timeout=30, **kwargs)


@pytest.fixture
def http(stack, db) -> Http:
    return Http(stack.http_url)
