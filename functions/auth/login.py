from bitworks.api import HttpApp, Request
from bitworks.bodies import LoginIn
from bitworks.services import auth

app = HttpApp()


@app.route("POST", "/auth/login", auth=False, body=LoginIn, errors_=(401, 429))
def login(req: Request) -> dict:
    """Exchange email and password for an access token."""
    return auth.login(req.session, req.body, req.source_ip)


handler = app.handler
