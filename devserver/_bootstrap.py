"""Worker ("container") entry point: imports one handler once, then serves invocations.

Runs as a plain script in a child interpreter, so it imports nothing from devserver and the
function's sys.path is exactly [CodeUri, layers..., stdlib/site-packages] like on Lambda.

Wire protocol over stdin / the original stdout (both pipes):
    frame = 4-byte big-endian length + header JSON + b"\\n" + payload bytes
The handler's own stdout is redirected to stderr, which the parent points at its log.
"""

import json
import logging
import os
import resource
import struct
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

_LEN = struct.Struct(">I")


def _read_exact(stream: Any, n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) < n:
        raise EOFError
    return data


def _peak_rss_kb() -> int:
    """This process's own peak RSS. Not ru_maxrss: Linux carries it across fork + exec, so every
    worker would report at least the emulator's (or a test runner's) RSS at the moment of the fork.
    VmHWM belongs to the address space that exec created."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB elsewhere


def _send(fd: int, header: dict[str, Any], payload: bytes = b"") -> None:
    body = json.dumps(header, separators=(",", ":")).encode() + b"\n" + payload
    view = memoryview(_LEN.pack(len(body)) + body)
    while view:
        view = view[os.write(fd, view) :]


class LambdaContext:
    """Mirrors the attributes of the AWS Lambda Python runtime's context object."""

    def __init__(self, request_id: str, deadline_ms: float, arn: str, client_context: Any = None) -> None:
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.invoked_function_arn = arn
        self.aws_request_id = request_id
        self.identity = None
        self.client_context = client_context
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(int(self._deadline_ms - time.time() * 1000), 0)

    def __repr__(self) -> str:
        return f"LambdaContext([aws_request_id={self.aws_request_id},function_name={self.function_name}])"


class _RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = _RequestIdFilter.request_id  # type: ignore[attr-defined]
        return True


def _error(exc: BaseException, skip_frames: int = 1) -> dict[str, Any]:
    frames = traceback.extract_tb(exc.__traceback__)[skip_frames:]
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": _RequestIdFilter.request_id,
        "stackTrace": traceback.format_list(frames),
    }


def _log_error(err: dict[str, Any]) -> None:
    # One record, like the Lambda runtime prints it.
    sys.stderr.write(f"[ERROR] {err['errorType']}: {err['errorMessage']}\nTraceback (most recent call last):\n")
    sys.stderr.write("".join(err.get("stackTrace") or []))
    sys.stderr.flush()


def _load_handler(spec: str) -> tuple[Callable[..., Any] | None, dict[str, Any] | None]:
    module_name, _, func_name = spec.replace("/", ".").rpartition(".")
    try:
        module = __import__(module_name, fromlist=["_"])
    except SyntaxError as exc:
        return None, {
            "errorMessage": f"Syntax error in module '{module_name}': {exc}",
            "errorType": "Runtime.UserCodeSyntaxError",
            "stackTrace": [],
        }
    except Exception as exc:  # noqa: BLE001 - any import failure is reported like Lambda does
        err = _error(exc, 0)
        err["errorMessage"] = f"Unable to import module '{module_name}': {exc}"
        err["errorType"] = "Runtime.ImportModuleError"
        return None, err
    handler = getattr(module, func_name, None)
    if not callable(handler):
        return None, {
            "errorMessage": f"Handler '{func_name}' missing on module '{module_name}'",
            "errorType": "Runtime.HandlerNotFound",
            "stackTrace": [],
        }
    return handler, None


def main() -> None:
    code_dir, handler_spec = sys.argv[1], sys.argv[2]
    extra_paths = [p for p in sys.argv[3:] if p]
    # Replace this script's directory (sys.path[0]) with the function's own paths.
    sys.path[:1] = [code_dir, *extra_paths]
    os.chdir(code_dir)

    resp_fd = os.dup(1)
    os.dup2(2, 1)  # print() in handlers goes to the log, never into the protocol pipe
    stdin = sys.stdin.buffer
    sys.stdin = open(os.devnull)

    root = logging.getLogger()
    h = logging.StreamHandler(sys.stderr)
    h.addFilter(_RequestIdFilter())
    h.setFormatter(logging.Formatter("[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n", "%Y-%m-%dT%H:%M:%S"))
    root.addHandler(h)

    t0 = time.perf_counter()
    handler, init_error = _load_handler(handler_spec)
    init_ms = (time.perf_counter() - t0) * 1000
    if init_error:
        _log_error(init_error)
    sys.stdout.flush()
    sys.stderr.flush()
    _send(
        resp_fd,
        {
            "ready": init_error is None,
            "error": init_error,
            "init_ms": init_ms,
            "rss": _peak_rss_kb(),
        },
    )
    if init_error or handler is None:
        return

    while True:
        try:
            (n,) = _LEN.unpack(_read_exact(stdin, 4))
            frame = _read_exact(stdin, n)
        except EOFError:
            return
        head, _, payload = frame.partition(b"\n")
        req = json.loads(head)
        _RequestIdFilter.request_id = req["id"]
        ctx = LambdaContext(req["id"], req["deadline"], req["arn"], req.get("cc"))
        ok = True
        try:
            event = json.loads(payload) if payload else {}
            result = handler(event, ctx)
            try:
                out = json.dumps(result).encode()
            except (TypeError, ValueError) as exc:
                ok = False
                err = {
                    "errorMessage": f"Unable to marshal response: {exc}",
                    "errorType": "Runtime.MarshalError",
                    "requestId": req["id"],
                    "stackTrace": [],
                }
                _log_error(err)
                out = json.dumps(err).encode()
        except Exception as exc:  # noqa: BLE001 - the handler's error is the invocation's result
            ok = False
            err = _error(exc)
            _log_error(err)
            out = json.dumps(err).encode()
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass  # the handler may have closed its own streams
        _send(resp_fd, {"ok": ok, "rss": _peak_rss_kb()}, out)


if __name__ == "__main__":
    main()
