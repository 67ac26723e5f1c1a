from bitworks.api import HttpApp, Request
from bitworks.services import chat

app = HttpApp()


@app.route("POST", "/messages/{message_id}/retry", response="MessageOut", errors_=(401, 403, 404, 409, 422, 429))
def retry_message(req: Request) -> dict:
    """Send a failed user message again: back to pending, a new turn starts."""
    return chat.retry_message(req.session, req.principal, req.path_uuid("message_id"))


handler = app.handler
