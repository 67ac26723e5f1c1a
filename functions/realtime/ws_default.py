from bitworks.errors import BadRequest
from bitworks.ws import WsApp, WsRequest

app = WsApp()


@app.message
def default(req: WsRequest) -> dict:
    """Unknown or missing action (bad JSON raises invalid_json while reading req.data)."""
    action = req.data.get("action")
    if action is None:
        raise BadRequest("missing action: use sendMessage, subscribe or ping")
    raise BadRequest("unknown action: use sendMessage, subscribe or ping")


handler = app.handler
