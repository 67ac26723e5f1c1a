from bitworks.services import connections
from bitworks.ws import WsApp, WsRequest

app = WsApp()


@app.message
def subscribe(req: WsRequest) -> dict:
    """{"action": "subscribe", "conversation_id"}: admins of the client follow a conversation."""
    return connections.subscribe(req.session, req.principal, req.connection_id, req.uuid_field("conversation_id"))


handler = app.handler
