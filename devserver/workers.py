"""Warm worker processes per function ("containers"), invocation, Lambda-style logging, reload."""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import math
import os
import struct
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from .template import FunctionSpec

_LEN = struct.Struct(">I")
_BOOTSTRAP = str(Path(__file__).with_name("_bootstrap.py"))
_SKIP_DIRS = {
    "__pycache__",
    ".git",
    ".venv",
    "venv",
    "node_modules",
    ".aws-sam",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
}

# Lambda allows 10 s of init. A laptop (or a 2-core CI box) cold-starting many functions at once
# can need more, and a spurious 500 there teaches nothing; override with DEVSERVER_INIT_TIMEOUT.
INIT_TIMEOUT = float(os.environ.get("DEVSERVER_INIT_TIMEOUT", "30"))


@dataclass
class InvokeResult:
    ok: bool
    payload: bytes  # JSON result, or the error JSON when not ok
    request_id: str
    duration_ms: float = 0.0

    def error(self) -> dict[str, Any]:
        try:
            data = json.loads(self.payload)
            return data if isinstance(data, dict) else {"errorMessage": str(data)}
        except ValueError:
            return {"errorMessage": self.payload.decode("utf-8", "replace")}


def _error_payload(message: str, error_type: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type}).encode()


class Logger:
    """Single sink shared with the workers' stderr, so lines stay in order."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        try:
            self.fd: int | None = self.stream.fileno()
        except (AttributeError, OSError, ValueError):
            self.fd = None

    def write(self, text: str) -> None:
        try:
            self.stream.write(text if text.endswith("\n") else text + "\n")
            self.stream.flush()
        except (ValueError, OSError):
            pass


class Worker:
    def __init__(self, proc: asyncio.subprocess.Process, generation: int) -> None:
        self.proc = proc
        self.generation = generation
        self.peak_rss_kb = 0
        self.invocations = 0
        self.init_ms: float | None = None  # reported once, on the first invocation
        self.busy = False

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def read_frame(self) -> tuple[dict[str, Any], bytes]:
        assert self.proc.stdout is not None
        (n,) = _LEN.unpack(await self.proc.stdout.readexactly(4))
        head, _, payload = (await self.proc.stdout.readexactly(n)).partition(b"\n")
        return json.loads(head), payload

    async def send(self, header: dict[str, Any], payload: bytes) -> None:
        assert self.proc.stdin is not None
        body = json.dumps(header, separators=(",", ":")).encode() + b"\n" + payload
        self.proc.stdin.write(_LEN.pack(len(body)) + body)
        if len(body) > 65536:
            await self.proc.stdin.drain()

    def kill(self) -> None:
        if self.alive:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        # Reap in the background so the pipe transports close while the loop still runs.
        if self not in _REAPING:
            task = asyncio.ensure_future(self.proc.wait())
            _REAPING[self] = task
            task.add_done_callback(functools.partial(_forget, self))


_REAPING: dict[Worker, asyncio.Future[int]] = {}


def _forget(worker: Worker, _task: asyncio.Future[int]) -> None:
    _REAPING.pop(worker, None)


async def reap_all(timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    pending = [t for t in _REAPING.values() if t.get_loop() is loop]
    if pending:
        await asyncio.wait(pending, timeout=timeout)


class FunctionPool:
    """All warm workers of one function; one invocation at a time per worker."""

    def __init__(
        self,
        spec: FunctionSpec,
        env: dict[str, str],
        logger: Logger,
        max_workers: int = 8,
        pycache_dir: str | None = None,
    ) -> None:
        self.spec = spec
        self.env = env
        self.logger = logger
        self.max_workers = max_workers
        self.pycache_dir = pycache_dir
        self.generation = 0
        self.workers: set[Worker] = set()
        self.idle: list[Worker] = []
        self.waiters: collections.deque[asyncio.Future[Worker | None]] = collections.deque()
        self.spawning = 0
        self.peak_rss_kb = 0
        self.invocations = 0
        self.errors = 0
        self.cold_starts = 0

    # -- lifecycle
    async def _spawn(self) -> tuple[Worker | None, bytes | None]:
        paths: list[str] = []
        for d in self.spec.layer_dirs:
            paths.append(str(d))
            if (d / "python").is_dir():
                paths.append(str(d / "python"))
        env = dict(self.env)
        if self.pycache_dir:
            env["PYTHONPYCACHEPREFIX"] = self.pycache_dir
        generation = self.generation  # code read from here on belongs to this generation
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-X",
                "utf8",
                _BOOTSTRAP,
                str(self.spec.code_dir),
                self.spec.handler,
                *paths,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=self.logger.fd,
                env=env,
                cwd=str(self.spec.code_dir),
                start_new_session=True,  # Ctrl+C goes to the emulator, which stops workers itself
            )
        except OSError as exc:  # e.g. CodeUri does not exist
            self.logger.write(f"devserver: cannot start a worker for {self.spec.name}: {exc}")
            return None, _error_payload(f"Cannot start runtime: {exc}", "Runtime.InvalidEntrypoint")
        worker = Worker(proc, generation)
        self.cold_starts += 1
        try:
            head, _ = await asyncio.wait_for(worker.read_frame(), timeout=max(INIT_TIMEOUT, self.spec.timeout))
        except (TimeoutError, asyncio.IncompleteReadError, ValueError):
            worker.kill()
            return None, _error_payload("Runtime exited during init", "Runtime.ExitError")
        if not head.get("ready"):
            worker.kill()
            return None, json.dumps(head.get("error")).encode()
        worker.init_ms = float(head.get("init_ms") or 0)
        worker.peak_rss_kb = int(head.get("rss") or 0)
        self.workers.add(worker)
        return worker, None

    async def _acquire(self) -> tuple[Worker | None, bytes | None]:
        while self.idle:
            w = self.idle.pop()
            if w.alive and w.generation == self.generation:
                return w, None
            self._discard(w)
        if len(self.workers) + self.spawning < self.max_workers:
            self.spawning += 1
            try:
                return await self._spawn()
            finally:
                self.spawning -= 1
        fut: asyncio.Future[Worker | None] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        waited = await fut
        if waited is None:  # a slot freed up by a dead/stale worker: start a fresh one
            self.spawning += 1
            try:
                return await self._spawn()
            finally:
                self.spawning -= 1
        return waited, None

    def _discard(self, w: Worker) -> None:
        w.kill()
        self.workers.discard(w)

    def _release(self, w: Worker) -> None:
        w.busy = False
        usable = w.alive and w.generation == self.generation
        if not usable:
            self._discard(w)
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(w if usable else None)
                return
        if usable:
            self.idle.append(w)

    def recycle(self) -> None:
        """Code changed: new invocations get fresh workers; busy ones finish first."""
        self.generation += 1
        for w in self.idle:
            self._discard(w)
        self.idle.clear()

    async def stop(self) -> None:
        workers = list(self.workers)
        for w in workers:
            self._discard(w)
        self.idle.clear()
        for fut in self.waiters:
            if not fut.done():
                fut.cancel()
        await reap_all()

    # -- invocation
    async def invoke(self, payload: bytes, request_id: str | None = None, client_context: Any = None) -> InvokeResult:
        rid = request_id or str(uuid.uuid4())
        self.invocations += 1
        log = self.logger.write
        worker, init_error = await self._acquire()
        log(f"START RequestId: {rid} Version: $LATEST")
        t0 = time.perf_counter()
        if worker is None:
            self.errors += 1
            dur = (time.perf_counter() - t0) * 1000
            log(f"END RequestId: {rid}")
            log(
                f"REPORT RequestId: {rid}\tDuration: {dur:.2f} ms\tBilled Duration: {math.ceil(dur)} ms\t"
                f"Memory Size: {self.spec.memory_mb} MB\tMax Memory Used: 0 MB\tStatus: error"
            )
            return InvokeResult(False, init_error or b"{}", rid, dur)
        worker.busy = True
        timeout = self.spec.timeout
        deadline_ms = time.time() * 1000 + timeout * 1000
        ok, out, rss_kb = False, b"", worker.peak_rss_kb
        try:
            await worker.send({"id": rid, "deadline": deadline_ms, "arn": self.spec.arn, "cc": client_context}, payload)
            head, out = await asyncio.wait_for(worker.read_frame(), timeout)
            ok, rss_kb = bool(head.get("ok")), int(head.get("rss") or rss_kb)
        except TimeoutError:
            worker.kill()
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
            msg = f"{stamp} {rid} Task timed out after {timeout:.2f} seconds"
            log(msg)
            out = _error_payload(msg, "Sandbox.Timedout")
        except (asyncio.IncompleteReadError, ConnectionError, BrokenPipeError, ValueError):
            await asyncio.sleep(0)  # let the exit status arrive
            code = worker.proc.returncode
            worker.kill()
            out = _error_payload(f"RequestId: {rid} Error: Runtime exited with error: exit status {code}", "Runtime.ExitError")
        except asyncio.CancelledError:
            worker.kill()  # protocol state unknown: this container is gone
            self._release(worker)
            raise
        dur = (time.perf_counter() - t0) * 1000
        worker.invocations += 1
        worker.peak_rss_kb = max(worker.peak_rss_kb, rss_kb)
        self.peak_rss_kb = max(self.peak_rss_kb, worker.peak_rss_kb)
        if not ok:
            self.errors += 1
        init = f"\tInit Duration: {worker.init_ms:.2f} ms" if worker.init_ms is not None else ""
        worker.init_ms = None
        log(  # END + REPORT in one write: one syscall on the hot path
            f"END RequestId: {rid}\n"
            f"REPORT RequestId: {rid}\tDuration: {dur:.2f} ms\tBilled Duration: {max(1, math.ceil(dur))} ms\t"
            f"Memory Size: {self.spec.memory_mb} MB\tMax Memory Used: {max(1, round(rss_kb / 1024))} MB{init}"
        )
        self._release(worker)
        return InvokeResult(ok, out, rid, dur)

    def stats(self) -> dict[str, Any]:
        return {
            "workers": len(self.workers),
            "busy": sum(1 for w in self.workers if w.busy),
            "invocations": self.invocations,
            "errors": self.errors,
            "cold_starts": self.cold_starts,
            "peak_rss_mb": round(self.peak_rss_kb / 1024, 2),
            "worker_details": [
                {
                    "pid": w.proc.pid,
                    "peak_rss_mb": round(w.peak_rss_kb / 1024, 2),
                    "invocations": w.invocations,
                    "busy": w.busy,
                }
                for w in self.workers
            ],
        }


def _tree_signature(root: Path) -> tuple[int, int, int]:
    """Cheap change detector for .py files: (count, sum of mtimes, sum of sizes)."""
    count = mt = size = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        for name in filenames:
            if name.endswith(".py"):
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except OSError:
                    continue
                count += 1
                mt += st.st_mtime_ns
                size += st.st_size
    return count, mt, size


class CodeWatcher:
    """Polls CodeUri and layer dirs; recycles the workers of functions whose code changed."""

    def __init__(self, pools: dict[str, FunctionPool], logger: Logger, interval: float = 0.5) -> None:
        self.interval = interval
        self.logger = logger
        self.by_dir: dict[Path, list[FunctionPool]] = collections.defaultdict(list)
        for pool in pools.values():
            for d in [pool.spec.code_dir, *pool.spec.layer_dirs]:
                self.by_dir[d].append(pool)
        self.signatures: dict[Path, tuple[int, int, int]] = {}

    def scan(self) -> list[Path]:
        changed = []
        for d in self.by_dir:
            sig = _tree_signature(d)
            if d in self.signatures and self.signatures[d] != sig:
                changed.append(d)
            self.signatures[d] = sig
        return changed

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.scan)
        while True:
            await asyncio.sleep(self.interval)
            changed = await loop.run_in_executor(None, self.scan)
            pools = {id(p): p for d in changed for p in self.by_dir[d]}
            if pools:
                names = sorted(p.spec.name for p in pools.values())
                shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                self.logger.write(f"devserver: code changed in {', '.join(map(str, changed))}; reloading {shown}")
            for pool in pools.values():
                pool.recycle()


def new_pycache_dir() -> str:
    # Private bytecode cache: never writes into the project, and survives worker restarts.
    return tempfile.mkdtemp(prefix="devserver-pycache-")
