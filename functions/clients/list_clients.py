from bitworks.api import HttpApp, Request
from bitworks.services import clients

app = HttpApp()


@app.route("GET", "/clients", response="ClientOut", query=("limit", "cursor"), errors_=(401, 403, 422))
def list_clients(req: Request) -> dict:
    """List clients, newest first."""
    return clients.list_clients(req.session, req.principal, req.limit, req.query("cursor"))


handler = app.handler
