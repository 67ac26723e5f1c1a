"""The AWS calls on the chat's hot path, without boto3: Lambda Invoke (Event) and the API Gateway
Management API (PostToConnection, DeleteConnection), SigV4-signed by hand over kept-alive
connections (`Wire`); a push to many sockets keeps up to 32 of them busy from one thread
(`call_many`).

Why by hand: these are three plain REST requests, and botocore's client pipeline is the slowest
part of sending a message. On a cold container, `import boto3` plus building the Lambda and
Management API clients takes several hundred ms (it loads and parses the service models); warm,
each call spends ~1.2 ms of CPU in request building, endpoint rules, signing and parsing, which
holds the GIL and serialises a fan-out to many sockets. Here a call is a hash, four HMACs and
one request. tests/unit/test_awscall.py proves the signatures equal botocore's SigV4Auth for the
same requests; boto3 stays for everything else (rare, off the hot path).

Endpoints: AWS_ENDPOINT_URL_LAMBDA / AWS_ENDPOINT_URL (as boto3 reads them), else the regional
endpoint; the Management API's from bitworks.realtime.management_endpoint().
"""

from __future__ import annotations

import collections
import functools
import hashlib
import hmac
import json
import os
import random
import socket
import ssl
import threading
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlsplit

from bitworks.sockets import idle_peer_closed

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
ATTEMPTS = 3
TIMEOUT_SECONDS = 10.0


class AwsCallError(Exception):
    def __init__(self, status: int, code: str, message: str = "") -> None:
        super().__init__(f"{code} ({status}): {message}" if message else f"{code} ({status})")
        self.status = status
        self.code = code
        self.detail = message


class GoneError(AwsCallError):
    """The connection is no longer there (410): delete its row."""


# -- credentials and signing -------------------------------------------------------------------
def credentials() -> tuple[str, str, str | None]:
    """Lambda puts the execution role's keys in the environment; elsewhere, botocore's chain."""
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        return key, secret, os.environ.get("AWS_SESSION_TOKEN") or None
    import botocore.session  # a developer's profile or an instance role: rare, so imported only here

    found = botocore.session.get_session().get_credentials()
    if found is None:
        raise AwsCallError(0, "NoCredentials", "no AWS credentials found")
    frozen = found.get_frozen_credentials()
    return frozen.access_key, frozen.secret_key, frozen.token


def _canonical_path(path: str) -> str:
    # botocore: remove dot segments, then quote with safe='/~' (the request path is quoted again).
    segments = [s for s in path.split("/") if s and s != "."]
    normal = "/" + "/".join(segments) + ("/" if path.endswith("/") and segments else "")
    return quote(normal, safe="/~")


def _host(url: str) -> str:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    if parts.port is None or parts.port == default:
        return str(parts.hostname)
    return f"{parts.hostname}:{parts.port}"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


@functools.lru_cache(maxsize=16)
def _signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    # Four HMACs that change once a day: a fan-out signs each of its requests with the same key.
    return _hmac(_hmac(_hmac(_hmac(f"AWS4{secret}".encode(), day), region), service), "aws4_request")


class Signer:
    """SigV4 for requests that differ only in their path (a fan-out: one body to many
    connections): the canonical headers, scope and key are worked out once, each path costs a
    hash and an HMAC. Every header sent is signed; these calls have no query strings."""

    __slots__ = ("_head", "_key", "_prefix", "_scope_line", "_suffix", "headers")

    def __init__(
        self,
        method: str,
        host: str,
        headers: dict[str, str],
        body_hash: str,
        service: str,
        region: str,
        creds: tuple[str, str, str | None],
        now: datetime | None = None,
    ) -> None:
        key, secret, token = creds
        stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
        out = {**headers, "Host": host, "X-Amz-Date": stamp}
        if token:
            out["X-Amz-Security-Token"] = token
        lowered = {k.lower(): " ".join(v.split()) for k, v in out.items()}
        names = sorted(lowered)
        signed = ";".join(names)
        scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
        self.headers = out  # to send, with Authorization
        # canonical request = METHOD \n path \n query (none) \n headers \n signed names \n body hash
        self._prefix = f"{method.upper()}\n"
        self._suffix = "\n\n" + "".join(f"{n}:{lowered[n]}\n" for n in names) + f"\n{signed}\n{body_hash}"
        self._scope_line = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n"
        self._head = f"AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={signed}, Signature="
        self._key = _signing_key(secret, stamp[:8], region, service)

    def authorization(self, path: str) -> str:
        canonical = self._prefix + _canonical_path(path) + self._suffix
        to_sign = self._scope_line + hashlib.sha256(canonical.encode()).hexdigest()
        return self._head + hmac.new(self._key, to_sign.encode(), hashlib.sha256).hexdigest()


def sign(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    service: str,
    region: str,
    creds: tuple[str, str, str | None],
    now: datetime | None = None,
) -> dict[str, str]:
    """Headers to send: `headers` plus Host, X-Amz-Date, X-Amz-Security-Token and Authorization."""
    signer = Signer(method, _host(url), headers, hashlib.sha256(body).hexdigest(), service, region, creds, now)
    return {**signer.headers, "Authorization": signer.authorization(urlsplit(url).path)}


# -- transport ---------------------------------------------------------------------------------
class Wire:
    """One kept-alive HTTP/1.1 connection to an AWS endpoint, for small JSON requests.

    Not http.client: its response parsing runs the email package's header parser, which was
    half of a fan-out's CPU (cProfile: 0.2 of 0.44 ms per call). AWS answers these calls with
    Content-Length (or chunked) bodies; a response with neither is read to EOF. The request
    goes out in one write (no Nagle / delayed-ACK stall between headers and body)."""

    __slots__ = ("host", "port", "rfile", "scheme", "sock")

    def __init__(self, scheme: str, netloc: str) -> None:
        parts = urlsplit(f"{scheme}://{netloc}")
        self.scheme, self.host = scheme, str(parts.hostname)
        self.port = parts.port or (443 if scheme == "https" else 80)
        self.sock: socket.socket | None = None
        self.rfile: Any = None

    def open(self) -> None:
        sock = socket.create_connection((self.host, self.port), TIMEOUT_SECONDS)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.scheme == "https":
                sock = _tls().wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self.sock, self.rfile = sock, sock.makefile("rb")

    def close(self) -> None:
        if self.sock is not None:
            self.rfile.close()
            self.sock.close()
        self.sock = self.rfile = None

    def went_away(self) -> bool:
        return self.sock is not None and idle_peer_closed(self.sock)

    @staticmethod
    def header_lines(method: str, headers: dict[str, str], body: bytes) -> str:
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        if body or method in ("POST", "PUT"):
            lines += f"Content-Length: {len(body)}\r\n"
        return lines

    def send(self, method: str, target: str, header_lines: str, body: bytes) -> None:
        """header_lines: each ending in CRLF (see header_lines)."""
        if self.sock is None:
            self.open()
        assert self.sock is not None
        self.sock.sendall(f"{method} {target} HTTP/1.1\r\n{header_lines}\r\n".encode("latin-1") + body)

    def receive(self, method: str) -> tuple[int, dict[str, str], bytes]:
        """(status, headers with lower-case names, body). Raises OSError when the connection
        broke (it is closed then: the next send reopens it)."""
        try:
            return self._receive(method)
        except (OSError, ValueError, IndexError):
            self.close()
            raise ConnectionError("bad or no HTTP response") from None

    def _receive(self, method: str) -> tuple[int, dict[str, str], bytes]:
        rfile = self.rfile
        status_line = rfile.readline(_LINE_MAX)
        if not status_line:
            raise ConnectionError("closed before a response")
        status = int(status_line.split(None, 2)[1])
        headers: dict[str, str] = {}
        while True:
            line = rfile.readline(_LINE_MAX)
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise ConnectionError("closed inside the headers")
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._chunked()
        elif "content-length" in headers:
            size = int(headers["content-length"])
            body = rfile.read(size)
            if len(body) != size:
                raise ConnectionError("closed inside the body")
        else:
            body = rfile.read()  # HTTP/1.0 style: the body ends with the connection
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, body

    def _chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline(_LINE_MAX).split(b";", 1)[0], 16)
            if size == 0:
                while self.rfile.readline(_LINE_MAX) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(_LINE_MAX)


_LINE_MAX = 65537


@functools.cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


# Kept-alive connections per thread and host. A single call uses the first; a fan-out spreads
# over up to FAN_WIDTH of them.
_local = threading.local()
FAN_WIDTH = 32


def _kept(scheme: str, netloc: str) -> list[Wire]:
    pools: dict[tuple[str, str], list[Wire]] | None = getattr(_local, "connections", None)
    if pools is None:
        pools = _local.connections = {}
    return pools.setdefault((scheme, netloc), [])


def _connections(scheme: str, netloc: str, count: int) -> list[Wire]:
    """`count` kept-alive connections, open. Those the server closed while idle are reopened
    (a select() tells, no round trip), and new ones connect in parallel: on a cold container
    that is up to FAN_WIDTH TLS handshakes, which in sequence would cost more than the fan-out."""
    kept = _kept(scheme, netloc)
    kept.extend(Wire(scheme, netloc) for _ in range(count - len(kept)))
    wires = kept[:count]
    for wire in wires:
        if wire.went_away():
            wire.close()
    unopened = [w for w in wires if w.sock is None]
    if len(unopened) == 1:
        _try_open(unopened[0])
    elif unopened:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(len(unopened), 16), thread_name_prefix="connect") as pool:
            list(pool.map(_try_open, unopened))
    return wires


def _try_open(wire: Wire) -> None:
    try:
        wire.open()
    except OSError:
        pass  # its request reopens it, and reports the error if it persists


def _error(status: int, error_type: str | None, body: bytes) -> AwsCallError:
    code = (error_type or "").split(":")[0]
    message = ""
    try:
        data = json.loads(body) if body else {}
        if isinstance(data, dict):
            code = code or str(data.get("__type") or data.get("Type") or data.get("code") or "")
            message = str(data.get("message") or data.get("Message") or "")
    except ValueError:
        message = body[:200].decode(errors="replace")
    code = code or f"HTTP{status}"
    return (GoneError if status == 410 or code == "GoneException" else AwsCallError)(status, code, message)


def call(
    method: str, url: str, service: str, region: str, body: bytes = b"", headers: dict[str, str] | None = None, *, tried: int = 0
) -> int:
    """One signed request with bounded retries (connection errors, throttling, 5xx), like boto3's
    standard mode; a kept-alive connection the server closed is reopened at once. Status or raise.
    `tried`: attempts already made (by call_many), which count against the same bound."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    for attempt in range(tried, ATTEMPTS):
        last = attempt == ATTEMPTS - 1
        signed = sign(method, url, headers or {}, body, service, region, credentials())
        wire = _connections(parts.scheme, parts.netloc, 1)[0]
        try:
            wire.send(method, target, Wire.header_lines(method, signed, body), body)
            status, answer, payload = wire.receive(method)
        except OSError:
            wire.close()
            if last:
                raise
            if attempt == 0:
                continue  # most often a kept-alive connection closed while idle: retry at once
            time.sleep(random.uniform(0, 0.05 * 2**attempt))
            continue
        if status < 300:
            return status
        error = _error(status, answer.get("x-amzn-errortype"), payload)
        if status not in RETRY_STATUSES or last:
            raise error
        time.sleep(random.uniform(0, 0.05 * 2**attempt))
    raise AssertionError("unreachable")


def call_many(method: str, urls: list[str], service: str, region: str, body: bytes = b"") -> list[int | Exception]:
    """The same signed request to many URLs of one host, in this thread: scattered over up to
    FAN_WIDTH kept-alive connections, each answer read in turn and its connection given the next
    request. The server works on FAN_WIDTH requests at once, as with a thread per connection,
    without the threads (a fan-out to 100 sockets spent most of its time switching 32 threads
    for the GIL). For each URL: its status, or the error. A request that failed on the wire or
    was throttled / 5xx is retried by `call` (its bounded retries)."""
    if not urls:
        return []
    first = urlsplit(urls[0])
    assert all(urlsplit(u).netloc == first.netloc for u in urls), "one host per batch"
    signer = Signer(method, _host(urls[0]), {}, hashlib.sha256(body).hexdigest(), service, region, credentials())
    fixed = Wire.header_lines(method, signer.headers, body)
    wires = _connections(first.scheme, first.netloc, min(FAN_WIDTH, len(urls)))
    results: list[int | Exception | None] = [None] * len(urls)
    retry: list[int] = []
    throttled = False
    queue = iter(range(len(urls)))
    in_flight: collections.deque[tuple[Wire, int]] = collections.deque()

    def send_next(wire: Wire) -> None:
        for i in queue:
            path = urlsplit(urls[i]).path
            try:
                wire.send(method, path, f"Authorization: {signer.authorization(path)}\r\n{fixed}", body)
            except OSError:
                wire.close()
                retry.append(i)
                continue
            in_flight.append((wire, i))
            return

    for wire in wires:
        send_next(wire)
    while in_flight:
        wire, i = in_flight.popleft()
        try:
            status, answer, payload = wire.receive(method)
        except OSError:
            retry.append(i)  # the wire is closed; its next send reopens it
        else:
            if status < 300:
                results[i] = status
            elif status in RETRY_STATUSES:
                retry.append(i)
                throttled = True
            else:
                results[i] = _error(status, answer.get("x-amzn-errortype"), payload)
        send_next(wire)
    if throttled:
        time.sleep(random.uniform(0, 0.05))  # back off before the retries, as call() does
    for i in retry:
        try:
            results[i] = call(method, urls[i], service, region, body, tried=1)
        except (AwsCallError, OSError) as error:
            results[i] = error
    return [r if r is not None else AwsCallError(0, "NotSent") for r in results]


# -- the calls ---------------------------------------------------------------------------------
def _region() -> str:
    from bitworks.config import get_settings

    return get_settings().aws_region


def lambda_endpoint() -> str:
    override = os.environ.get("AWS_ENDPOINT_URL_LAMBDA") or os.environ.get("AWS_ENDPOINT_URL")
    return (override or f"https://lambda.{_region()}.amazonaws.com").rstrip("/")


def invoke_event(function_name: str, payload: bytes) -> None:
    """Lambda Invoke, InvocationType Event: queued by Lambda, answered 202."""
    url = f"{lambda_endpoint()}/2015-03-31/functions/{quote(function_name, safe='')}/invocations"
    headers = {"X-Amz-Invocation-Type": "Event", "Content-Type": "application/json"}
    call("POST", url, "lambda", _region(), payload, headers)


def _connection_url(endpoint: str, connection_id: str) -> str:
    return f"{endpoint}/@connections/{quote(connection_id, safe='')}"


def post_to_connection(endpoint: str, connection_id: str, data: bytes) -> None:
    """Raises GoneError when the socket is gone (410)."""
    call("POST", _connection_url(endpoint, connection_id), "execute-api", _region(), data)


def _on_connections(method: str, endpoint: str, connection_ids: list[str], data: bytes = b"") -> list[Exception | None]:
    statuses = call_many(method, [_connection_url(endpoint, c) for c in connection_ids], "execute-api", _region(), data)
    return [s if isinstance(s, Exception) else None for s in statuses]


def post_to_connections(endpoint: str, connection_ids: list[str], data: bytes) -> list[Exception | None]:
    """The same data to many sockets (see call_many); per connection None (sent) or its error,
    a GoneError when the socket is gone."""
    return _on_connections("POST", endpoint, connection_ids, data)


def delete_connections(endpoint: str, connection_ids: list[str]) -> list[Exception | None]:
    return _on_connections("DELETE", endpoint, connection_ids)
