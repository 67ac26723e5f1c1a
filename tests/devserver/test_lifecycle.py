"""Reload on code change, schedules, static files, the CLI ready line and clean shutdown."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

import devserver

from .conftest import FIXTURES, Env, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_schedule_fires_with_eventbridge_payload(emu: Env) -> None:
    tick = wait_for(lambda: next(iter(emu.records("tick")), None), timeout=10)
    assert tick["detail-type"] == "Scheduled Event" and tick["source"] == "aws.events"
    assert tick["account"] == "123456789012" and tick["resources"][0].startswith("arn:aws:events:us-east-1:")


def test_reload_on_code_change_and_static(tmp_path: Path) -> None:
    app = tmp_path / "stack"
    shutil.copytree(FIXTURES, app)
    web = tmp_path / "web"
    web.mkdir()
    (web / "index.html").write_text("<h1>ui</h1>")
    with (
        open(tmp_path / "log.txt", "w") as log,
        devserver.start(
            str(app / "template.yaml"),
            reload_interval=0.05,
            schedules=False,
            static=[f"{web}:/web/"],
            log_stream=log,
        ) as h,
    ):
        assert requests.get(f"{h.http_url}/noop", timeout=10).text == "ok"
        assert requests.get(f"{h.http_url}/web/", timeout=10).text == "<h1>ui</h1>"
        handler = app / "app" / "noop.py"
        handler.write_text('def handler(event, context):\n    return {"statusCode": 200, "body": "changed!"}\n')
        wait_for(lambda: requests.get(f"{h.http_url}/noop", timeout=10).text == "changed!", timeout=10)
        # A broken edit gives 500s, fixing it recovers, all without a restart.
        handler.write_text("def handler(event, context):\n    return {\n")
        wait_for(lambda: requests.get(f"{h.http_url}/noop", timeout=10).status_code == 500, timeout=10)
        handler.write_text('def handler(event, context):\n    return {"statusCode": 200, "body": "fixed"}\n')
        wait_for(lambda: requests.get(f"{h.http_url}/noop", timeout=10).text == "fixed", timeout=10)


def test_worker_pool_scales_and_is_reused(emu: Env) -> None:
    import concurrent.futures as cf

    with cf.ThreadPoolExecutor(4) as ex:
        pids = set(ex.map(lambda _: requests.get(f"{emu.http}/echo", timeout=10).json()["pid"], range(12)))
    assert 1 <= len(pids) <= 8
    stats = requests.get(f"{emu.aws}/_emulator/stats", timeout=10).json()["functions"]["Echo"]
    assert stats["workers"] >= 1 and stats["invocations"] >= 12


def test_cli_ready_line_and_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devserver",
            "--template",
            str(FIXTURES / "template.yaml"),
            "--http-port",
            "0",
            "--ws-port",
            "0",
            "--aws-port",
            "0",
            "--no-schedules",
            "--parameter-overrides",
            f"RecordDir={tmp_path}",
            "Stage=test",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 20
        line = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("devserver ready") or not line:
                break
        assert line.startswith("devserver ready http=http://127.0.0.1:"), line
        urls = dict(part.split("=", 1) for part in line.split()[2:])
        assert set(urls) == {"http", "ws", "aws"}
        assert requests.get(f"{urls['http']}/noop", timeout=10).text == "ok"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
