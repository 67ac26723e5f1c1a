from bitworks.api import HttpApp, Request
from bitworks.services import api_keys

app = HttpApp()


@app.route("DELETE", "/api-keys/{key_id}", status=204, errors_=(403, 404))
def revoke_api_key(req: Request) -> None:
    """Revoke a key: it stops working at once."""
    api_keys.revoke(req.session, req.principal, req.path_uuid("key_id"))


handler = app.handler
