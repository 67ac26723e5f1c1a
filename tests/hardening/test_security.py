"""Security promises through the emulator: login brute force (per account, per IP), the per-user
message rate, revocation (deleted user, deleted client, password change) that also closes the
sockets, single-use tickets, CORS per client, security headers on every answer."""

from __future__ import annotations

import asyncio
import http.client
import json
from urllib.parse import urlparse

import pytest
import websockets

from tests.hardening.support import bump, conversation, record, secret, tenant

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

HEADERS = {"x-content-type-options": "nosniff", "cache-control": "no-store", "x-frame-options": "DENY", "referrer-policy": "no-referrer"}


def _login_from(base: str, source_ip: str, body: dict) -> tuple[int, dict]:
    u = urlparse(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60, source_address=(source_ip, 0))
    try:
        conn.request("POST", "/auth/login", body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        conn.close()


def _check_headers(r) -> None:
    for name, value in HEADERS.items():
        assert r.headers.get(name) == value, (r.request.method, r.url, r.status_code, dict(r.headers))
    assert "strict-transport-security" in {k.lower() for k in r.headers}
    bump("security", "responses_with_security_headers")


def test_login_brute_force_is_limited_per_account_and_per_ip(hstack, hhttp, factory):
    t = tenant(factory)
    user, cid = t["users"][0], str(t["client"].id)
    for _ in range(5):
        status, _ = _login_from(hhttp.base, "127.0.0.21", {"email": user.email, "password": "wrong-password", "client_id": cid})
        assert status == 401
    status, body = _login_from(hhttp.base, "127.0.0.22", {"email": user.email, "password": user.password, "client_id": cid})
    assert status == 429 and body["error"]["code"] == "rate_limited"  # the account, from anywhere, even with the password
    other = factory.user(t["client"], "user")
    for i in range(50):  # LOGIN_IP_MAX_FAILURES default: 50 failures from one address, any accounts
        status, _ = _login_from(hhttp.base, "127.0.0.23", {"email": f"nobody{i}@example.com", "password": "x" * 10, "client_id": cid})
        assert status == 401, i
    status, _ = _login_from(hhttp.base, "127.0.0.23", {"email": other.email, "password": other.password, "client_id": cid})
    assert status == 429
    status, body = _login_from(hhttp.base, "127.0.0.24", {"email": other.email, "password": other.password, "client_id": cid})
    assert status == 200, body  # another address still gets in
    secret(body["access_token"])
    record("security", login_attempts=57, login_limits="account 5 / IP 50 failures per 15 min: 429 proven")


def test_message_rate_limit_per_user(hstack, hhttp, factory):
    t = tenant(factory, settings={"message_rate_per_minute": 3})
    token = t["tokens"][0]
    conv = conversation(hhttp, token)
    statuses = [hhttp("POST", f"/conversations/{conv}/messages", token, json={"content": f"m{i}"}).status_code for i in range(3)]
    r = hhttp("POST", f"/conversations/{conv}/messages", token, json={"content": "one too many"})
    assert statuses == [201, 201, 201] and r.status_code == 429, (statuses, r.text)
    assert r.json()["error"]["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1
    _check_headers(r)


async def _closed_within(ws, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            while True:
                await ws.recv()
    except websockets.ConnectionClosed:
        return True
    except TimeoutError:
        return False


@pytest.mark.parametrize("how", ["delete_user", "delete_client", "change_password", "admin_resets_password"])
def test_revoked_credentials_stop_working_and_close_sockets(hstack, hhttp, factory, how):
    t = tenant(factory)
    superadmin = factory.user(None, "superadmin")
    su_token = secret(factory.token(superadmin))
    user, token = t["users"][0], t["tokens"][0]
    assert hhttp("GET", "/auth/verify", token).status_code == 200

    async def scenario() -> None:
        async with websockets.connect(f"{hstack.ws_url}/?ticket={hhttp.ticket(token)}") as ws:
            await ws.send('{"action": "ping"}')
            assert json.loads(await asyncio.wait_for(ws.recv(), 30)) == {"type": "pong"}
            if how == "delete_user":
                r = hhttp("DELETE", f"/users/{user.id}", t["admin_token"])
            elif how == "delete_client":
                r = hhttp("DELETE", f"/clients/{t['client'].id}", su_token)
            elif how == "change_password":
                r = hhttp("PUT", "/auth/password", token, json={"current_password": user.password, "new_password": "another secret 42"})
            else:
                r = hhttp("PUT", f"/users/{user.id}", t["admin_token"], json={"password": "reset by the admin 7"})
            assert r.status_code in (200, 204), r.text
            assert await _closed_within(ws, 30), f"{how}: the socket stayed open"

    asyncio.run(scenario())
    r = hhttp("GET", "/auth/verify", token)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    _check_headers(r)
    assert hhttp("POST", "/auth/ws-ticket", token).status_code == 401
    bump("security", "revocations_proven")


def test_ticket_works_once(hstack, hhttp, factory):
    t = tenant(factory)
    ticket = hhttp.ticket(t["tokens"][0])

    async def scenario() -> None:
        async with websockets.connect(f"{hstack.ws_url}/?ticket={ticket}"):
            pass
        with pytest.raises(websockets.exceptions.InvalidStatus) as info:
            async with websockets.connect(f"{hstack.ws_url}/?ticket={ticket}"):
                pass
        assert info.value.response.status_code in (401, 403)

    asyncio.run(scenario())


def test_cors_allows_only_each_clients_origins(hstack, hhttp, factory):
    a = tenant(factory)
    b = tenant(factory)
    from bitworks.db import session_scope
    from bitworks.models import Client

    with session_scope() as s:
        s.get(Client, a["client"].id).allowed_origins = ["https://a.example"]
        s.get(Client, b["client"].id).allowed_origins = ["https://b.example"]
    pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    r = hhttp("OPTIONS", "/conversations", headers={"Origin": "https://a.example", **pre})
    assert r.status_code in (200, 204) and r.headers.get("access-control-allow-origin") == "https://a.example"
    assert "authorization" in r.headers.get("access-control-allow-headers", "").lower()
    r = hhttp("OPTIONS", "/conversations", headers={"Origin": "https://evil.example", **pre})
    assert "access-control-allow-origin" not in r.headers
    _check_headers(r)
    token_a = a["tokens"][0]
    r = hhttp("GET", "/conversations", token_a, headers={"Origin": "https://a.example"})
    assert r.status_code == 200 and r.headers.get("access-control-allow-origin") == "https://a.example"
    _check_headers(r)
    for origin in ("https://b.example", "https://evil.example", "null"):  # B's origin is not A's
        r = hhttp("GET", "/conversations", token_a, headers={"Origin": origin})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers, origin
        _check_headers(r)
    r = hhttp("GET", "/conversations", "not-a-token", headers={"Origin": "https://evil.example"})
    assert r.status_code == 401 and "access-control-allow-origin" not in r.headers
    _check_headers(r)


def test_security_headers_on_every_kind_of_answer(hstack, hhttp, factory):
    t = tenant(factory)
    token = t["tokens"][0]
    conv = conversation(hhttp, token)
    answers = [
        hhttp("GET", "/health"),
        hhttp("GET", "/auth/verify", token),
        hhttp("GET", "/auth/verify"),
        hhttp("GET", f"/conversations/{conv}", token),
        hhttp("GET", "/conversations/not-a-uuid", token),
        hhttp("GET", "/clients", token),
        hhttp("POST", "/conversations", token, data="{not json", headers={"Content-Type": "application/json"}),
        hhttp("POST", "/conversations", token, data="x" * (1024 * 1024 + 10), headers={"Content-Type": "application/json"}),
        hhttp("DELETE", f"/conversations/{conv}", token),
        hhttp("POST", "/n8n/replies", data="{}"),
    ]
    assert sorted({r.status_code for r in answers}) == [200, 204, 400, 401, 403, 413, 422], [r.status_code for r in answers]
    for r in answers:
        _check_headers(r)
        assert "traceback" not in r.text.lower()
