"""The emulated stack for sections 4-6: `python -m devserver` on the real template.yaml in its own
process (as bench/emulator_bench.py runs it), against the bench database, with the demo assistant
standing in for n8n. The emulator's stdout is read line by line: REPORT lines (duration of each
handler invocation, measured by the emulator around the worker call) are kept with a timestamp.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import JWT_SECRET, ROOT

_REPORT = re.compile(r"REPORT RequestId: \S+\tDuration: ([0-9.]+) ms")


class Stack:
    def __init__(self, db_url: str, n8n_url: str, max_workers: int = 8) -> None:
        from tools.dev import emulator_env

        self.tmp = tempfile.TemporaryDirectory()
        env_file = Path(self.tmp.name) / "env.json"
        env = emulator_env(
            db_url,
            JWT_SECRET,
            n8n_url,
            "http://127.0.0.1:9",
            PASSWORD_SCRYPT_N="16",
            N8N_BACKOFF_BASE="0",
            DB_POOL_SIZE="1",
            POWERTOOLS_LOG_LEVEL="WARNING",
            STAGE="bench",
        )
        env_file.write_text(json.dumps(env))
        cmd = [
            sys.executable,
            "-m",
            "devserver",
            "--template",
            str(ROOT / "template.yaml"),
            "--http-port",
            "0",
            "--ws-port",
            "0",
            "--aws-port",
            "0",
            "--no-schedules",
            "--env-vars",
            str(env_file),
            "--async-retry-delays",
            "0.2,0.4",
            "--max-workers",
            str(max_workers),
            "--reload-interval",
            "0",
        ]
        penv = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=penv, cwd=ROOT)
        self.reports: list[tuple[float, float]] = []  # (monotonic time seen, duration ms)
        self.errors: list[str] = []
        self.tail: list[str] = []  # the last lines of the emulator's output, for diagnosis
        ready = threading.Event()
        self.urls: dict[str, str] = {}

        def reader() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                if not ready.is_set() and line.startswith("devserver ready"):
                    self.urls = dict(p.split("=", 1) for p in line.split()[2:])
                    ready.set()
                    continue
                self.tail.append(line.rstrip())
                del self.tail[:-300]
                m = _REPORT.search(line)
                if m:
                    self.reports.append((time.monotonic(), float(m.group(1))))
                elif "Traceback" in line or "ERROR" in line or "Task timed out" in line:
                    if len(self.errors) < 50:
                        self.errors.append(line.rstrip())

        threading.Thread(target=reader, daemon=True, name="emulator-log").start()
        if not ready.wait(60):
            self.stop()
            raise RuntimeError("the emulator did not become ready")
        self.http_url, self.ws_url, self.aws_url = self.urls["http"], self.urls["ws"], self.urls["aws"]

    def report_sum(self, since: float, until: float) -> tuple[float, int]:
        ds = [d for t, d in list(self.reports) if since <= t <= until]
        return sum(ds), len(ds)

    def handler_cover(self, windows: list[tuple[float, float]]) -> list[float]:
        """Per window (monotonic start, end): ms during which at least one handler invocation ran."""
        intervals = sorted((t - d / 1000, t) for t, d in list(self.reports))
        out = []
        for w0, w1 in windows:
            covered, cur_end = 0.0, w0
            for a, b in intervals:
                if b <= w0 or a >= w1:
                    continue
                a, b = max(a, w0, cur_end), min(b, w1)
                if b > a:
                    covered += b - a
                    cur_end = b
            out.append(covered * 1000)
        return out

    def handler_split(self, windows: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
        """Sequential turns: durations of the first and second invocation starting in each window."""
        intervals = sorted((t - d / 1000, d) for t, d in list(self.reports))
        a, b = [], []
        for w0, w1 in windows:
            inside = [d for start, d in intervals if w0 <= start <= w1]
            if len(inside) >= 2:
                a.append(inside[0])
                b.append(inside[1])
        return a, b

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.aws_url}/_emulator/stats", timeout=10) as r:
            return json.loads(r.read())

    def invoke(self, function: str, payload: dict[str, Any]) -> int:
        req = urllib.request.Request(
            f"{self.aws_url}/2015-03-31/functions/{function}/invocations", data=json.dumps(payload).encode(), method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.tmp.cleanup()
