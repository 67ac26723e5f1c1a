import base64
import json

import jwt


def test_register_login_verify(api_client, factory):
    client = factory.client()
    status, body, headers = api_client.call(
        "POST", "/auth/register", body={"email": "Ann@Example.com", "password": "s3cret-pass", "client_id": str(client.id)}
    )
    assert status == 201, body
    assert body["user"]["email"] == "ann@example.com"
    assert body["user"]["role"] == "user"
    assert "password_hash" not in json.dumps(body)
    assert headers["X-Content-Type-Options"] == "nosniff"

    status, body, _ = api_client.call(
        "POST", "/auth/register", body={"email": "ann@example.com", "password": "other-pass", "client_id": str(client.id)}
    )
    assert status == 409 and body["error"]["code"] == "conflict"

    status, body, _ = api_client.call(
        "POST", "/auth/login", body={"email": "ann@example.com", "password": "s3cret-pass", "client_id": str(client.id)}
    )
    assert status == 200, body
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    token = body["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert {"sub", "cid", "role", "ver", "iat", "exp", "iss", "aud"} <= set(claims)

    status, body, _ = api_client.call("GET", "/auth/verify", token=token)
    assert status == 200 and body["valid"] is True and body["user"]["id"] == claims["sub"]


def test_unknown_email_and_wrong_password_answer_the_same(api_client, factory):
    client = factory.client()
    user = factory.user(client)
    a = api_client.call("POST", "/auth/login", body={"email": user.email, "password": "wrong", "client_id": str(client.id)})
    b = api_client.call("POST", "/auth/login", body={"email": "nobody@example.com", "password": "wrong", "client_id": str(client.id)})
    assert a[0] == b[0] == 401
    assert a[1] == b[1]


def test_signup_refused_when_client_disallows(api_client, factory):
    client = factory.client(allow_signup=False)
    status, body, _ = api_client.call(
        "POST", "/auth/register", body={"email": "a@example.com", "password": "s3cret-pass", "client_id": str(client.id)}
    )
    assert status == 403 and body["error"]["code"] == "forbidden"


def test_bad_bodies(api_client, factory):
    client = factory.client()
    cases = [
        ("{not json", 400, "invalid_json"),
        ("", 400, "invalid_json"),
        ("[1,2]", 422, "validation_error"),
        (json.dumps({"email": "a@example.com", "password": 12345678, "client_id": str(client.id)}), 422, "validation_error"),
        (json.dumps({"email": "a@example.com", "password": "s3cret-pass"}), 422, "validation_error"),
        (
            json.dumps({"email": "a@example.com", "password": "s3cret-pass", "client_id": str(client.id), "role": "admin"}),
            422,
            "validation_error",
        ),
        (json.dumps({"email": "not-an-email", "password": "s3cret-pass", "client_id": str(client.id)}), 422, "validation_error"),
        (json.dumps({"email": "a@example.com", "password": "s3cret-pass", "client_id": "nope"}), 422, "validation_error"),
    ]
    for raw, status, code in cases:
        got, body, _ = api_client.call("POST", "/auth/register", raw_body=raw)
        assert (got, body["error"]["code"]) == (status, code), raw
        assert body["error"]["message"]
    got, body, _ = api_client.call("POST", "/auth/register", raw_body="x" * (1024 * 1024 + 1))
    assert got == 413 and body["error"]["code"] == "payload_too_large"


def test_tokens_rejected(api_client, factory):
    client = factory.client()
    user = factory.user(client)
    good = factory.token(user)
    header, payload, _sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    none_alg = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=").decode()
    other_key = jwt.encode(claims, "another-key-" + "y" * 40, algorithm="HS256")
    expired = jwt.encode({**claims, "exp": 1000, "iat": 900}, "test-secret-" + "x" * 40, algorithm="HS256")
    wrong_aud = jwt.encode({**claims, "aud": "elsewhere"}, "test-secret-" + "x" * 40, algorithm="HS256")
    tampered = f"{header}.{base64.urlsafe_b64encode(json.dumps({**claims, 'role': 'admin'}).encode()).rstrip(b'=').decode()}.{_sig}"
    for token in (None, "garbage", f"{none_alg}.{payload}.", other_key, expired, wrong_aud, tampered):
        status, body, _ = api_client.call("GET", "/auth/verify", token=token)
        assert status == 401 and body["error"]["code"] == "unauthorized", token


def test_password_change_revokes_old_tokens(api_client, factory):
    client = factory.client()
    user = factory.user(client, password="old-password-1")
    token = factory.token(user)
    status, body, _ = api_client.call(
        "PUT", "/auth/password", token=token, body={"current_password": "wrong", "new_password": "new-password-1"}
    )
    assert status == 422
    status, _, _ = api_client.call(
        "PUT", "/auth/password", token=token, body={"current_password": "old-password-1", "new_password": "new-password-1"}
    )
    assert status == 204
    assert api_client.call("GET", "/auth/verify", token=token)[0] == 401
    status, body, _ = api_client.call(
        "POST", "/auth/login", body={"email": user.email, "password": "new-password-1", "client_id": str(client.id)}
    )
    assert status == 200


def test_failed_logins_limited_per_account_and_ip(api_client, factory):
    client = factory.client()
    user = factory.user(client)
    for _ in range(5):
        assert api_client.call("POST", "/auth/login", body={"email": user.email, "password": "bad", "client_id": str(client.id)})[0] == 401
    status, body, headers = api_client.call(
        "POST", "/auth/login", body={"email": user.email, "password": user.password, "client_id": str(client.id)}
    )
    assert status == 429 and body["error"]["code"] == "rate_limited" and int(headers["Retry-After"]) > 0
    # another account from another IP still logs in
    other = factory.user(client)
    assert (
        api_client.call(
            "POST",
            "/auth/login",
            body={"email": other.email, "password": other.password, "client_id": str(client.id)},
            source_ip="203.0.113.9",
        )[0]
        == 200
    )
    # one IP trying many accounts is cut off too
    for i in range(50):
        api_client.call(
            "POST",
            "/auth/login",
            body={"email": f"x{i}@example.com", "password": "bad", "client_id": str(client.id)},
            source_ip="203.0.113.50",
        )
    status, _, _ = api_client.call(
        "POST",
        "/auth/login",
        body={"email": other.email, "password": other.password, "client_id": str(client.id)},
        source_ip="203.0.113.50",
    )
    assert status == 429


def test_ws_ticket(api_client, factory):
    client = factory.client()
    user = factory.user(client)
    status, body, _ = api_client.call("POST", "/auth/ws-ticket", token=factory.token(user))
    assert status == 200 and body["expires_in"] == 60 and body["ticket"].startswith("wst_")
    from bitworks.db import session_scope
    from bitworks.services.auth import redeem_ws_ticket

    with session_scope() as s:
        assert redeem_ws_ticket(s, body["ticket"]).id == user.id
    with session_scope() as s:
        assert redeem_ws_ticket(s, body["ticket"]) is None
