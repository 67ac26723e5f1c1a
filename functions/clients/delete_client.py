from bitworks.api import HttpApp, Request
from bitworks.services import clients

app = HttpApp()


@app.route("DELETE", "/clients/{client_id}", status=204, errors_=(401, 403, 404, 422))
def delete_client(req: Request) -> None:
    """Delete a client with all its users, conversations and templates; closes their sockets."""
    clients.delete(req.session, req.principal, req.path_uuid("client_id"))


handler = app.handler
