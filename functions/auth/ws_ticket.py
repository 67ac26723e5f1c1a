from bitworks.api import HttpApp, Request
from bitworks.services import auth

app = HttpApp()


@app.route("POST", "/auth/ws-ticket", errors_=(401,))
def ws_ticket(req: Request) -> dict:
    """A single-use ticket (60 s) for opening the WebSocket: ?ticket=..."""
    return auth.issue_ws_ticket(req.session, req.principal)


handler = app.handler
