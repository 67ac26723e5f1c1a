from bitworks.api import HttpApp, Request
from bitworks.services import users

app = HttpApp()


@app.route("DELETE", "/users/{user_id}", status=204, errors_=(401, 403, 404, 409, 422))
def delete_user(req: Request) -> None:
    """Delete a user of the client: revokes its tokens, closes its sockets (409 for oneself)."""
    users.delete(req.session, req.principal, req.path_uuid("user_id"))


handler = app.handler
