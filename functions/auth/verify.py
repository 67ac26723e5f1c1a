from bitworks.api import HttpApp, Request
from bitworks.services import auth

app = HttpApp()


@app.route("GET", "/auth/verify", errors_=(401,))
def verify(req: Request) -> dict:
    """Check a token; answers the user and when the token expires."""
    return auth.verify(req.session, req.principal, (req.header("authorization") or "")[7:].strip())


handler = app.handler
