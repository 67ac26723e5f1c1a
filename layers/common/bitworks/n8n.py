"""The n8n side of a turn: signing, the webhook POST with bounded retries, and reading the answer.

Contract (ARCHITECTURE.md, "n8n contract"):
- headers: the client's header auth, X-Bitworks-Timestamp, X-Bitworks-Delivery and
  X-Bitworks-Signature = sha256=<hex HMAC-SHA256(signing_secret, f"{timestamp}.{body}")> over the
  exact bytes sent;
- 429, 5xx, timeouts and connection errors are retried with exponential backoff (Retry-After on
  429 honoured up to a cap); any other non-2xx fails at once;
- a 2xx whose JSON holds `output`, `reply` or `content` as a string is the reply; a JSON 2xx
  without them, or an empty 2xx (n8n's "Respond: No Data", a 204), is an acknowledgement (n8n will
  call back); a 2xx with a body that is not JSON (an HTML page from a proxy) is neither and fails
  the turn.

No database here: `deliver` runs between two transactions of the dispatch, so no connection (or
row) is held while n8n thinks. Nothing secret is logged: no header values, no body, no URL path.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from bitworks.config import Settings

MAX_REPLY_CHARS = 16000
# A reply is at most 16,000 characters; even fully \u-escaped JSON stays far below this.
MAX_RESPONSE_BYTES = 1024 * 1024
REPLY_FIELDS = ("output", "reply", "content")
RETRY_AFTER_CAP_SECONDS = 10.0
BACKOFF_CAP_SECONDS = 8.0
MIN_ATTEMPT_SECONDS = 0.2  # not worth starting an attempt with less time left than this

# One pooled session per container: warm invocations reuse the TLS connection to n8n.
_session = requests.Session()
_session.headers.update({"User-Agent": "bitworks-message-dispatch/1", "Accept": "application/json"})

try:  # urllib3 wraps a body-phase read timeout in requests' ConnectionError; recognise it
    from urllib3.exceptions import ReadTimeoutError as _ReadTimeoutError
except ImportError:  # pragma: no cover
    _ReadTimeoutError = TimeoutError  # type: ignore[misc,assignment]


@dataclass
class Outcome:
    """What one delivery came to. kind: reply | callback | failed."""

    kind: str
    content: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    code: str | None = None  # upstream_error | upstream_timeout (failed only)
    message: str | None = None
    attempts: int = 0
    status: int | None = None

    @classmethod
    def failed(cls, code: str, message: str, status: int | None = None) -> Outcome:
        return cls("failed", code=code, message=message, status=status)


def signature(signing_secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(signing_secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signed_headers(
    body: bytes, *, signing_secret: str, delivery_id: str, auth_header: tuple[str, str] | None, timestamp: int | None = None
) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    headers = {
        "Content-Type": "application/json",
        "X-Bitworks-Timestamp": stamp,
        "X-Bitworks-Delivery": delivery_id,
        "X-Bitworks-Signature": signature(signing_secret, stamp, body),
    }
    if auth_header is not None:
        headers[auth_header[0]] = auth_header[1]
    return headers


def budget_seconds(settings: Settings) -> float:
    """Upper bound of one delivery: every attempt at full timeouts plus the longest waits."""
    attempts = settings.n8n_max_attempts
    wait = max(min(settings.n8n_backoff_base * 2 ** (attempts - 1), BACKOFF_CAP_SECONDS), RETRY_AFTER_CAP_SECONDS)
    return attempts * (settings.n8n_connect_timeout + settings.n8n_read_timeout) + (attempts - 1) * wait


def interpret(status: int, raw: bytes) -> Outcome:
    """Read a 2xx answer: the reply, an acknowledgement (callback follows), or a failure."""
    if not raw.strip():
        return Outcome("callback", status=status)  # no data: the workflow answers by callback
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: hostile nesting
        data = None
    if data is None:
        # Neither a reply nor a recognisable ack: waiting for a callback would just time out later.
        return Outcome.failed("upstream_error", f"n8n answered HTTP {status} without a JSON body", status)
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        data = data[0]  # n8n "Respond with: All Entries" wraps the item in a list
    if isinstance(data, dict):
        for name in REPLY_FIELDS:
            if name not in data:
                continue
            value = data[name]
            if not isinstance(value, str):
                return Outcome.failed("upstream_error", f"n8n reply field '{name}' is not a string", status)
            if not value.strip():
                return Outcome.failed("upstream_error", "n8n answered with an empty reply", status)
            if len(value) > MAX_REPLY_CHARS:
                return Outcome.failed("upstream_error", f"n8n reply exceeds {MAX_REPLY_CHARS} characters", status)
            metadata = data.get("metadata")
            return Outcome("reply", content=value, metadata=metadata if isinstance(metadata, dict) else {}, status=status)
    return Outcome("callback", status=status)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return max(0.0, min(seconds, RETRY_AFTER_CAP_SECONDS))


def _backoff(settings: Settings, attempt: int) -> float:
    base = min(settings.n8n_backoff_base * 2 ** (attempt - 1), BACKOFF_CAP_SECONDS)
    return base * (0.5 + random.random() / 2)  # jitter, not security


def _read_capped(response: requests.Response, deadline: float) -> bytes | None:
    """The body, or None when it exceeds MAX_RESPONSE_BYTES. A slow drip cannot outlive the deadline."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(64 * 1024):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            return None
        chunks.append(chunk)
        if time.monotonic() > deadline:
            raise requests.exceptions.ReadTimeout("n8n answer still streaming at the deadline")
    return b"".join(chunks)


def _is_timeout(exc: Exception) -> bool:
    if isinstance(exc, requests.Timeout):
        return True
    return any(isinstance(arg, _ReadTimeoutError) for arg in getattr(exc, "args", ()))


def deliver(
    url: str,
    body_for_attempt: Callable[[int], bytes],
    *,
    signing_secret: str,
    delivery_id: str,
    auth_header: tuple[str, str] | None,
    settings: Settings,
    time_left: float | None = None,
    logger: Any = None,
) -> Outcome:
    """POST the turn to n8n until it answers for good, retries run out, or time does.

    `body_for_attempt(n)` gives the exact bytes of attempt n (each attempt carries a fresh reply
    token); they are signed as sent. `time_left` (seconds) bounds the whole delivery, e.g. the
    Lambda's remaining time minus a margin."""
    budget = budget_seconds(settings) if time_left is None else min(time_left, budget_seconds(settings))
    deadline = time.monotonic() + budget
    host = urlsplit(url).netloc
    last_code, last_message, last_status = "upstream_timeout", "n8n did not answer in time", None
    sent = 0
    for attempt in range(1, settings.n8n_max_attempts + 1):
        left = deadline - time.monotonic()
        if left < MIN_ATTEMPT_SECONDS:
            break
        sent = attempt
        body = body_for_attempt(attempt)
        headers = signed_headers(body, signing_secret=signing_secret, delivery_id=delivery_id, auth_header=auth_header)
        wait: float | None = None
        try:
            response = _session.post(
                url,
                data=body,
                headers=headers,
                timeout=(min(settings.n8n_connect_timeout, left), min(settings.n8n_read_timeout, left)),
                allow_redirects=False,  # a redirect would carry the auth header elsewhere
                stream=True,
            )
            try:
                status = response.status_code
                if 200 <= status < 300:
                    raw = _read_capped(response, deadline)
                    if raw is None:
                        outcome = Outcome.failed("upstream_error", f"n8n answer exceeds {MAX_RESPONSE_BYTES} bytes", status)
                    else:
                        outcome = interpret(status, raw)
                    outcome.attempts = attempt
                    _log(logger, "n8n answered", host, delivery_id, attempt, status, outcome.kind)
                    return outcome
                retry_after = response.headers.get("Retry-After") if status == 429 else None
            finally:
                response.close()
            if status == 429 or status >= 500:
                last_code, last_message, last_status = "upstream_error", f"n8n answered HTTP {status}", status
                wait = _retry_after(retry_after) if status == 429 else None
                _log(logger, "n8n retryable answer", host, delivery_id, attempt, status, "retry")
            else:
                _log(logger, "n8n refused the delivery", host, delivery_id, attempt, status, "failed")
                outcome = Outcome.failed("upstream_error", f"n8n answered HTTP {status}", status)
                outcome.attempts = attempt
                return outcome
        except requests.RequestException as exc:
            if _is_timeout(exc):
                last_code, last_message, last_status = "upstream_timeout", "n8n did not answer in time", None
            else:
                last_code, last_message, last_status = "upstream_error", "n8n could not be reached", None
            _log(logger, "n8n request failed", host, delivery_id, attempt, None, type(exc).__name__)
        if attempt < settings.n8n_max_attempts:
            pause = max(_backoff(settings, attempt), wait or 0.0)
            if time.monotonic() + pause + MIN_ATTEMPT_SECONDS > deadline:
                break
            if pause > 0:
                time.sleep(pause)  # backoff between attempts, bounded by the deadline above
    outcome = Outcome.failed(last_code, last_message, last_status)
    outcome.attempts = sent
    return outcome


def _log(logger: Any, text: str, host: str, delivery_id: str, attempt: int, status: int | None, result: str) -> None:
    if logger is not None:
        extra = {"n8n_host": host, "delivery_id": delivery_id, "attempt": attempt, "status": status, "result": result}
        logger.info(text, extra=extra)
