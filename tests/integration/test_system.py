import pytest

from tests.support.events import LambdaContext, http_event
from tests.support.template import http_routes, load_handler


def test_health_ok(api_client, db):
    status, body, headers = api_client.call("GET", "/health")
    assert status == 200 and body == {"status": "ok", "database": "ok"}
    assert headers["Cache-Control"] == "no-store"


def test_health_degraded(api_client, db, monkeypatch):
    import bitworks.db

    def broken():
        raise OSError("connection refused")

    monkeypatch.setattr(bitworks.db, "get_engine", broken)
    status, body, _ = api_client.call("GET", "/health")
    assert status == 503 and body == {"status": "degraded", "database": "unreachable"}
    assert "refused" not in str(body)


def preflight(path, origin=None):
    assert http_routes()[("OPTIONS", "/{proxy+}")] == "CorsPreflightFunction"
    headers = {"access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type"}
    if origin:
        headers["origin"] = origin
    event = http_event("OPTIONS", path, route="/{proxy+}", path_params={"proxy": path.lstrip("/")}, headers=headers)
    response = load_handler("CorsPreflightFunction")(event, LambdaContext("CorsPreflightFunction"))
    return response["statusCode"], response["headers"], response.get("body")


@pytest.mark.parametrize(
    "path",
    ["/health", "/users", "/conversations/0b0e8d9c-4f7b-4b7e-9a51-3f1f6c7b2d11/messages", "/a/b/c/d/e", "/clients/x/y?z=1"],
)
def test_preflight_allowed_origin_on_any_path(factory, path):
    factory.client(allowed_origins=["https://shop.example", "http://localhost:5173"])
    status, headers, body = preflight(path, "https://shop.example")
    assert status == 204 and not body
    assert headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "POST" in headers["Access-Control-Allow-Methods"] and "Authorization" in headers["Access-Control-Allow-Headers"]
    assert headers["Access-Control-Max-Age"] == "600" and headers["Vary"] == "Origin"
    assert headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("origin", [None, "https://evil.example", "https://shop.example.evil.example", "null"])
def test_preflight_refused_origin(factory, origin):
    factory.client(allowed_origins=["https://shop.example"])
    status, headers, _ = preflight("/users", origin)
    assert status == 204
    assert "Access-Control-Allow-Origin" not in headers and "Access-Control-Allow-Methods" not in headers


def test_preflight_survives_a_database_outage(factory, monkeypatch):
    import bitworks.db

    factory.client(allowed_origins=["https://shop.example"])

    def broken():
        raise OSError("down")

    monkeypatch.setattr(bitworks.db, "get_engine", broken)
    status, headers, _ = preflight("/users", "https://other.example")
    assert status == 204 and "Access-Control-Allow-Origin" not in headers


def test_database_outage_answers_503_not_500(api_client, factory, monkeypatch):
    """A failover or restart is not the caller's fault: 503 with Retry-After, in the error shape."""
    from sqlalchemy import create_engine

    import bitworks.db as db_module

    client = factory.client()
    user = factory.user(client)
    token = factory.token(user)
    dead = create_engine("postgresql+pg8000://nobody@127.0.0.1:9/none", connect_args={"timeout": 1})
    monkeypatch.setattr(db_module, "_engine", dead)
    status, body, headers = api_client.call("GET", "/conversations", token=token)
    assert status == 503 and body["error"]["code"] == "unavailable" and headers["Retry-After"] == "1"
