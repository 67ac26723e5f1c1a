from bitworks.api import HttpApp, Request
from bitworks.services import users

app = HttpApp()


@app.route("GET", "/users/{user_id}", response="UserOut", errors_=(401, 404, 422))
def get_user(req: Request) -> dict:
    """One user: admins see the users of their client, a user sees itself."""
    return users.get(req.session, req.principal, req.path_uuid("user_id"))


handler = app.handler
