from bitworks.api import HttpApp, Request
from bitworks.bodies import ClientUpdateIn
from bitworks.services import clients

app = HttpApp()


@app.route("PUT", "/clients/{client_id}", body=ClientUpdateIn, response="ClientOut", errors_=(401, 403, 404, 409, 422))
def update_client(req: Request) -> dict:
    """Change a client; rotate_signing_secret answers the new secret, this once."""
    return clients.update(req.session, req.principal, req.path_uuid("client_id"), req.body)


handler = app.handler
