from bitworks.api import HttpApp, Request
from bitworks.bodies import UserUpdateIn
from bitworks.services import users

app = HttpApp()


@app.route("PUT", "/users/{user_id}", body=UserUpdateIn, response="UserOut", errors_=(401, 403, 404, 409, 422))
def update_user(req: Request) -> dict:
    """Change a user; a new email, role or password revokes that user's tokens."""
    return users.update(req.session, req.principal, req.path_uuid("user_id"), req.body)


handler = app.handler
