from bitworks.api import HttpApp, Reply, Request
from bitworks.bodies import MessageCreateIn
from bitworks.services import chat

app = HttpApp()


@app.route(
    "POST",
    "/conversations/{conversation_id}/messages",
    status=201,
    auth="in_service",  # the token's user is checked inside the send's row lock: a round trip saved
    body=MessageCreateIn,
    response="MessageOut",
    errors_=(400, 401, 403, 404, 409, 413, 422, 429),
)
def create_message(req: Request) -> dict | Reply:
    """Send a user message; its AI turn starts (or waits for the running one)."""
    message, created = chat.send_user_message(
        req.session, req.bearer(), req.path_uuid("conversation_id"), req.body.content, req.body.client_message_id
    )
    # A repeated client_message_id with the same content: the first message, 200, nothing pushed.
    return {"message": message} if created else Reply(200, {"message": message})


handler = app.handler
