from bitworks.api import HttpApp, Request
from bitworks.services import clients

app = HttpApp()


@app.route("GET", "/clients/{client_id}", response="ClientOut", errors_=(401, 403, 404, 422))
def get_client(req: Request) -> dict:
    """One client; secrets appear only as has_* flags."""
    return clients.get(req.session, req.principal, req.path_uuid("client_id"))


handler = app.handler
