from bitworks.services import connections
from bitworks.ws import WsApp, WsRequest

app = WsApp()


@app.connect
def connect(req: WsRequest) -> None:
    """$connect ?ticket=...: a bad, used, expired or missing ticket rejects the handshake (401)."""
    connections.open_connection(req.session, req.connection_id, req.query("ticket"))


handler = app.handler
