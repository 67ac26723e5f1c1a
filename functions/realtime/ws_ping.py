from bitworks.ws import WsApp, WsRequest

app = WsApp()


@app.message
def ping(req: WsRequest) -> dict:
    """{"action": "ping"} -> {"type": "pong"}; the plumbing has refreshed last_seen_at already."""
    return {"type": "pong"}


handler = app.handler
