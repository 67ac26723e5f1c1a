"""The AWS calls on the chat's hot path, without boto3: Lambda Invoke (Event) and the API Gateway
Management API (PostToConnection, DeleteConnection), SigV4-signed by hand over kept-alive
connections.

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

import hashlib
import hmac
import http.client
import json
import os
import random
import threading
import time
from datetime import datetime, timezone
from urllib.parse import quote, urlsplit

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
ATTEMPTS = 3
TIMEOUT_SECONDS = 10.0


class AwsCallError(Exception):
    def __init__(self, status: int, code: str, message: str = "") -> None:
        super().__init__(f"{code} ({status}): {message}" if message else f"{code} ({status})")
        self.status = status
        self.code = code


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
    """Headers to send: `headers` plus Host, X-Amz-Date, X-Amz-Security-Token and Authorization.
    Every header sent is signed (no query strings on these calls)."""
    key, secret, token = creds
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    out = {**headers, "Host": _host(url), "X-Amz-Date": stamp}
    if token:
        out["X-Amz-Security-Token"] = token
    lowered = {k.lower(): " ".join(v.split()) for k, v in out.items()}
    names = sorted(lowered)
    canonical = "\n".join(
        [
            method.upper(),
            _canonical_path(urlsplit(url).path),
            "",
            "".join(f"{n}:{lowered[n]}\n" for n in names),
            ";".join(names),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signing_key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret}".encode(), stamp[:8]), region), service), "aws4_request")
    signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
    out["Authorization"] = f"AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}"
    return out


# -- transport ---------------------------------------------------------------------------------
_local = threading.local()  # one kept-alive connection per host and thread (the push pool's threads)


def _connection(scheme: str, netloc: str, fresh: bool) -> http.client.HTTPConnection:
    pool: dict[tuple[str, str], http.client.HTTPConnection] = getattr(_local, "connections", None) or {}
    _local.connections = pool
    conn = pool.get((scheme, netloc))
    if conn is not None and not fresh:
        return conn
    if conn is not None:
        conn.close()
    if scheme == "https":
        conn = http.client.HTTPSConnection(netloc, timeout=TIMEOUT_SECONDS)
    else:
        conn = http.client.HTTPConnection(netloc, timeout=TIMEOUT_SECONDS)
    pool[(scheme, netloc)] = conn
    return conn


def _error(status: int, headers: http.client.HTTPMessage, body: bytes) -> AwsCallError:
    code = (headers.get("x-amzn-ErrorType") or "").split(":")[0]
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


def call(method: str, url: str, service: str, region: str, body: bytes = b"", headers: dict[str, str] | None = None) -> int:
    """One signed request with bounded retries (connection errors, throttling, 5xx), like boto3's
    standard mode; a kept-alive connection the server closed is reopened at once. Status or raise."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    for attempt in range(ATTEMPTS):
        last = attempt == ATTEMPTS - 1
        signed = sign(method, url, headers or {}, body, service, region, credentials())
        conn = _connection(parts.scheme, parts.netloc, fresh=False)
        try:
            conn.request(method, target, body=body or None, headers=signed)
            response = conn.getresponse()
            payload = response.read()
        except (http.client.HTTPException, OSError):
            _connection(parts.scheme, parts.netloc, fresh=True)  # drop the broken one
            if last:
                raise
            if attempt == 0:
                continue  # most often a kept-alive connection closed while idle: retry at once
            time.sleep(random.uniform(0, 0.05 * 2**attempt))
            continue
        if response.status < 300:
            return response.status
        error = _error(response.status, response.headers, payload)
        if response.status not in RETRY_STATUSES or last:
            raise error
        time.sleep(random.uniform(0, 0.05 * 2**attempt))
    raise AssertionError("unreachable")


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


def post_to_connection(endpoint: str, connection_id: str, data: bytes) -> None:
    """Raises GoneError when the socket is gone (410)."""
    call("POST", f"{endpoint}/@connections/{quote(connection_id, safe='')}", "execute-api", _region(), data)


def delete_connection(endpoint: str, connection_id: str) -> None:
    call("DELETE", f"{endpoint}/@connections/{quote(connection_id, safe='')}", "execute-api", _region())
