from bitworks.api import HttpApp, Request
from bitworks.services import api_keys

app = HttpApp()


@app.route("GET", "/api-keys", query=("limit", "cursor", "client_id"), errors_=(403, 404))
def list_api_keys(req: Request) -> dict:
    """The client's API keys: prefix, name, scopes, expiry, last use (never the key)."""
    return api_keys.list_keys(req.session, req.principal, req.query_uuid("client_id"), req.limit, req.query("cursor"))


handler = app.handler
