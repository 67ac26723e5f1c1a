from bitworks.api import HttpApp, Request
from bitworks.bodies import UserCreateIn
from bitworks.services import users

app = HttpApp()


@app.route("POST", "/users", status=201, body=UserCreateIn, response="UserOut", errors_=(401, 403, 404, 409, 422))
def create_user(req: Request) -> dict:
    """Create a user or admin of the client (superadmins name client_id)."""
    return users.create(req.session, req.principal, req.body)


handler = app.handler
