"""Shared fixtures: one emulator on free ports for the whole module set, driven by real clients."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import devserver

FIXTURES = Path(__file__).parent / "fixtures"
TEMPLATE = FIXTURES / "template.yaml"


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll a condition until it is truthy (returns its value) or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def records(directory: Path, kind: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(directory.glob(f"{kind}-*.json"))]


class Env:
    def __init__(self, handle: devserver.Handle, record_dir: Path, log_path: Path) -> None:
        self.handle = handle
        self.record_dir = record_dir
        self.log_path = log_path

    @property
    def http(self) -> str:
        return self.handle.http_url

    @property
    def ws(self) -> str:
        return self.handle.ws_url

    @property
    def aws(self) -> str:
        return self.handle.aws_url

    def log(self) -> str:
        return self.log_path.read_text()

    def records(self, kind: str) -> list[dict[str, Any]]:
        return records(self.record_dir, kind)


@pytest.fixture(scope="session")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("devserver")
    record_dir = tmp / "records"
    env_file = tmp / "env.json"
    env_file.write_text(
        json.dumps(
            {
                "Parameters": {"GLOBAL_VAR": "from-env-file-params", "NOT_DECLARED": "nope"},
                "Echo": {"FROM_ENV_FILE": "from-env-file", "NOT_DECLARED": "nope"},
            }
        )
    )
    log_path = tmp / "emulator.log"
    log = open(log_path, "w")
    handle = devserver.start(
        str(TEMPLATE),
        env_vars=str(env_file),
        parameter_overrides={"RecordDir": str(record_dir)},
        async_retry_delays=(0.2, 0.2),
        log_stream=log,
    )
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    try:
        yield Env(handle, record_dir, log_path)
    finally:
        handle.stop()
        log.close()


def aws_client(service: str, endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1}),
    )
