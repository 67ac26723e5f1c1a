from bitworks.api import HttpApp, Request
from bitworks.bodies import RegisterIn
from bitworks.services import auth

app = HttpApp()


@app.route("POST", "/auth/register", status=201, auth=False, body=RegisterIn, response="UserOut", errors_=(403, 404, 409))
def register(req: Request) -> dict:
    """Sign up as a user of a client that allows signup."""
    return auth.register(req.session, req.body)


handler = app.handler
