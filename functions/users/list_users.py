from bitworks.api import HttpApp, Request
from bitworks.services import users

app = HttpApp()


@app.route("GET", "/users", response="UserOut", query=("limit", "cursor", "client_id"), errors_=(401, 403, 404, 422))
def list_users(req: Request) -> dict:
    """List the users of the client, newest first (superadmins pass ?client_id=)."""
    return users.list_users(req.session, req.principal, req.query_uuid("client_id"), req.limit, req.query("cursor"))


handler = app.handler
