"""The hand-rolled SigV4 of bitworks.awscall signs exactly as botocore does, and the transport
retries what boto3's standard mode retries, against a real local HTTP server."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from bitworks import awscall
from tests.support.fake_aws import serve, stop

NOW = datetime(2026, 11, 22, 7, 5, 9, tzinfo=timezone.utc)


def botocore_headers(
    method: str, url: str, headers: dict[str, str], body: bytes, service: str, creds: Any, now: datetime = NOW, region: str = "eu-west-1"
) -> dict[str, str]:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    from unittest import mock

    with mock.patch("botocore.auth.get_current_datetime", return_value=now.replace(tzinfo=None)):
        SigV4Auth(Credentials(*creds), service, region).add_auth(request)
    return dict(request.headers.items())


CASES = [
    (
        "POST",
        "https://lambda.eu-west-1.amazonaws.com/2015-03-31/functions/bitworks-prod-dispatch/invocations",
        {"X-Amz-Invocation-Type": "Event", "Content-Type": "application/json"},
        b'{"message_id": "m", "turn_id": "t"}',
        "lambda",
    ),
    (  # an ARN: the colons are quoted in the path, and quoted again in the canonical request
        "POST",
        "https://lambda.eu-west-1.amazonaws.com/2015-03-31/functions/"
        "arn%3Aaws%3Alambda%3Aeu-west-1%3A123456789012%3Afunction%3Ad/invocations",
        {"X-Amz-Invocation-Type": "Event", "Content-Type": "application/json"},
        b"{}",
        "lambda",
    ),
    (  # API Gateway connection ids end with '='; the path has '@'
        "POST",
        "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/@connections/Zx9_fAbCdEFgHi%3D",
        {},
        '{"type":"typing","state":"on","note":"ünïcode"}'.encode(),
        "execute-api",
    ),
    ("DELETE", "http://127.0.0.1:3001/dev/@connections/L0c%3D", {}, b"", "execute-api"),
]


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEBYaDH+session/token=="])
@pytest.mark.parametrize(("method", "url", "headers", "body", "service"), CASES)
def test_signature_equals_botocores(method: str, url: str, headers: dict[str, str], body: bytes, service: str, token: str | None) -> None:
    creds = ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    ours = awscall.sign(method, url, headers, body, service, "eu-west-1", creds, now=NOW)
    theirs = botocore_headers(method, url, {**headers, "Host": ours["Host"]}, body, service, creds)
    assert ours["Authorization"] == theirs["Authorization"]
    assert ours["X-Amz-Date"] == theirs["X-Amz-Date"] == "20261122T070509Z"
    assert ours.get("X-Amz-Security-Token") == theirs.get("X-Amz-Security-Token") == token


class _Server:
    """Answers from a script of statuses; records what arrived."""

    def __init__(self, script: list[int]) -> None:
        self.script = list(script)
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.seen.append((self.command, self.path, dict(self.headers.items()), body))
                status = outer.script.pop(0) if outer.script else 202
                payload = b"" if status < 300 else json.dumps({"message": "nope"}).encode()
                self.send_response(status)
                if status == 410:
                    self.send_header("x-amzn-ErrorType", "GoneException")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd, self.url = serve(Handler)

    def close(self) -> None:
        stop(self.httpd)


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Any:
    from bitworks.config import get_settings

    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")  # never connected to
    get_settings.cache_clear()
    yield get_settings()
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def server() -> Any:
    made: list[_Server] = []

    def start(*script: int) -> _Server:
        made.append(_Server(list(script)))
        return made[-1]

    yield start
    for s in made:
        s.close()


def test_invoke_event_sends_a_signed_event_invocation(server: Any, settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    s = server(202)
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", s.url)
    awscall.invoke_event("my-stack-dispatch", b'{"message_id": "m"}')
    method, path, headers, body = s.seen[0]
    assert (method, path, body) == ("POST", "/2015-03-31/functions/my-stack-dispatch/invocations", b'{"message_id": "m"}')
    assert headers["X-Amz-Invocation-Type"] == "Event"
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/")
    assert "/lambda/aws4_request" in headers["Authorization"]


def test_throttling_and_5xx_are_retried_then_reported(server: Any) -> None:
    s = server(429, 503, 200)
    assert awscall.call("POST", f"{s.url}/prod/@connections/a%3D", "execute-api", "us-east-1", b"x") == 200
    assert len(s.seen) == 3
    s2 = server(500, 500, 500, 500)
    with pytest.raises(awscall.AwsCallError) as info:
        awscall.call("POST", f"{s2.url}/prod/@connections/a%3D", "execute-api", "us-east-1", b"x")
    assert info.value.status == 500 and len(s2.seen) == awscall.ATTEMPTS


def test_gone_is_not_retried_and_is_its_own_error(server: Any, settings: Any) -> None:
    s = server(410)
    with pytest.raises(awscall.GoneError) as info:
        awscall.post_to_connection(f"{s.url}/prod", "abc=", b"{}")
    assert info.value.code == "GoneException" and len(s.seen) == 1
    assert s.seen[0][1] == "/prod/@connections/abc%3D"


def test_a_closed_keepalive_connection_is_reopened(server: Any) -> None:
    s = server()
    url = f"{s.url}/prod/@connections/k%3D"
    assert awscall.call("POST", url, "execute-api", "us-east-1", b"1") == 202
    s.close()  # the server goes away and comes back on another port: the old socket is dead
    s2 = server()
    url2 = f"{s2.url}/prod/@connections/k%3D"
    assert awscall.call("POST", url2, "execute-api", "us-east-1", b"2") == 202
    # and the same host again after its server closed our kept-alive socket
    assert awscall.call("POST", url2, "execute-api", "us-east-1", b"3") == 202
    assert [b for *_, b in s2.seen] == [b"2", b"3"]


# -- many calls at once (the fan-out) --------------------------------------------------------------
class _FanServer:
    """Answers each path from its own script of statuses (default 200), optionally chunked or
    unsized; records each request's path and the client port it came from."""

    def __init__(self, scripts: dict[str, list[int]] | None = None, framing: str = "length") -> None:
        self.scripts = scripts or {}
        self.seen: list[tuple[str, str, int, bytes]] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.lock:
                    outer.seen.append((self.command, self.path, self.client_address[1], body))
                    outer.headers.append(dict(self.headers.items()))
                    script = outer.scripts.get(self.path) or []
                    status = script.pop(0) if script else 200
                payload = json.dumps({"message": f"status {status}"}).encode() if status >= 300 else b'{"ok":1}'
                self.send_response(status)
                if status == 410:
                    self.send_header("x-amzn-ErrorType", "GoneException")
                if framing == "chunked":
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    half = len(payload) // 2
                    for part in (payload[:half], payload[half:]):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.write(b"0\r\n\r\n")
                elif framing == "unsized":
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(payload)
                    self.close_connection = True
                else:
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    self.close_connection = framing == "drop"

            do_POST = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd, url = serve(Handler)
        self.endpoint = f"{url}/prod"

    def close(self) -> None:
        stop(self.httpd)


@pytest.fixture
def fan_server() -> Any:
    made: list[_FanServer] = []

    def start(scripts: dict[str, list[int]] | None = None, framing: str = "length") -> _FanServer:
        made.append(_FanServer(scripts, framing))
        return made[-1]

    yield start
    for s in made:
        s.close()


def test_a_fan_out_answers_each_connection_in_order(fan_server: Any, settings: Any) -> None:
    ids = [f"c{i}=" for i in range(100)]
    s = fan_server(
        {
            "/prod/@connections/c7%3D": [410],
            "/prod/@connections/c42%3D": [429, 503, 200],  # throttled, then a 5xx: retried
            "/prod/@connections/c64%3D": [500, 500, 500, 500, 500],  # never recovers
            "/prod/@connections/c99%3D": [403],  # not retried
        }
    )
    errors = awscall.post_to_connections(s.endpoint, ids, b'{"type":"x"}')
    assert len(errors) == 100
    assert isinstance(errors[7], awscall.GoneError)
    assert isinstance(errors[64], awscall.AwsCallError) and errors[64].status == 500
    assert isinstance(errors[99], awscall.AwsCallError) and errors[99].status == 403
    assert [i for i, e in enumerate(errors) if e is not None] == [7, 64, 99]
    paths = [p for _, p, _, _ in s.seen]
    assert paths.count("/prod/@connections/c42%3D") == 3 and paths.count("/prod/@connections/c7%3D") == 1
    assert paths.count("/prod/@connections/c64%3D") == awscall.ATTEMPTS  # one bound, batch included
    assert all(body == b'{"type":"x"}' for *_, body in s.seen)
    # at most FAN_WIDTH connections were opened for the batch, and a second batch reuses them
    first_ports = {port for *_, port, _ in s.seen}
    assert 1 < len(first_ports) <= awscall.FAN_WIDTH
    s.seen.clear()
    assert awscall.post_to_connections(s.endpoint, ids[:50], b"{}") == [None] * 50
    assert {port for *_, port, _ in s.seen} <= first_ports


def test_a_fan_out_signs_every_request_as_botocore_does(fan_server: Any, settings: Any) -> None:
    s = fan_server()
    ids = ["a=", "b/c=", "ünï="]
    assert awscall.delete_connections(s.endpoint, ids) == [None, None, None]
    assert [m for m, *_ in s.seen] == ["DELETE"] * 3
    creds = awscall.credentials()
    for (_, path, _, body), headers in zip(s.seen, s.headers, strict=True):
        stamp = datetime.strptime(headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        region = headers["Authorization"].split("/")[2]  # the scope's, as configured
        url = s.endpoint.rsplit("/prod", 1)[0] + path
        theirs = botocore_headers("DELETE", url, {"Host": headers["Host"]}, body, "execute-api", creds, stamp, region)
        assert headers["Authorization"] == theirs["Authorization"]
        assert "/execute-api/aws4_request" in headers["Authorization"]


@pytest.mark.parametrize("framing", ["chunked", "unsized"])
def test_responses_without_a_content_length_are_read(fan_server: Any, settings: Any, framing: str) -> None:
    s = fan_server({"/prod/@connections/g%3D": [410]}, framing=framing)
    errors = awscall.post_to_connections(s.endpoint, ["a=", "g=", "b="], b"{}")
    assert errors[0] is None and errors[2] is None
    assert isinstance(errors[1], awscall.GoneError) and errors[1].detail == "status 410"


def test_a_fan_out_survives_connections_the_server_dropped(fan_server: Any, settings: Any) -> None:
    # The server closes each kept-alive socket after its answer, without saying so (as a load
    # balancer does at its idle timeout): the next batch finds them closed and opens new ones.
    s = fan_server(framing="drop")
    ids = [f"k{i}=" for i in range(40)]
    assert awscall.post_to_connections(s.endpoint, ids, b"1") == [None] * 40
    assert awscall.post_to_connections(s.endpoint, ids, b"2") == [None] * 40
    for body in (b"1", b"2"):
        assert sorted(p for _, p, _, b in s.seen if b == body) == sorted(f"/prod/@connections/k{i}%3D" for i in range(40))
