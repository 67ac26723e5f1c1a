from bitworks.services import connections
from bitworks.ws import WsApp, WsRequest

app = WsApp()


@app.disconnect
def disconnect(req: WsRequest) -> None:
    """$disconnect (best effort: the sweeper and 410s on push clean up the rest)."""
    connections.close_connection(req.session, req.connection_id)


handler = app.handler
