from bitworks.api import HttpApp, Request
from bitworks.bodies import ApiKeyCreateIn
from bitworks.services import api_keys

app = HttpApp()


@app.route("POST", "/api-keys", status=201, body=ApiKeyCreateIn, response="ApiKeyOut", errors_=(403, 404))
def create_api_key(req: Request) -> dict:
    """Create an API key for n8n workflows (admins); the full key is shown only in this answer."""
    return api_keys.create(req.session, req.principal, req.body)


handler = app.handler
