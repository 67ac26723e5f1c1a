from bitworks.bodies import MessageCreateIn
from bitworks.ws import WsApp, WsRequest

app = WsApp()


@app.message
def send_message(req: WsRequest) -> dict | None:
    """{"action": "sendMessage", "conversation_id", "content", "client_message_id"?}: same effect as
    POST /conversations/{id}/messages. The ack is the message.created push to all the owner's
    connections, so nothing is sent back here."""
    conversation_id = req.uuid_field("conversation_id")
    body = req.model(MessageCreateIn, exclude=("action", "conversation_id"))
    # Imported here: the chat service (and the n8n dispatch it pulls in) loads on first use only.
    from bitworks.services.chat import send_user_message

    message, created = send_user_message(req.session, req.principal, conversation_id, body.content, body.client_message_id)
    if created:
        return None
    # A repeat of a stored client_message_id pushes nothing: answer the sender so it gets its ack.
    return {"type": "message.created", "message": message}


handler = app.handler
