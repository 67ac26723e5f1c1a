from bitworks.api import HttpApp, Request
from bitworks.bodies import ClientCreateIn
from bitworks.services import clients

app = HttpApp()


@app.route("POST", "/clients", status=201, body=ClientCreateIn, response="ClientOut", errors_=(401, 403, 409, 422))
def create_client(req: Request) -> dict:
    """Create a client (tenant); the answer shows its signing_secret, this once."""
    return clients.create(req.session, req.principal, req.body)


handler = app.handler
