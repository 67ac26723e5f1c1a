from bitworks.api import HttpApp, Request
from bitworks.bodies import ConversationCreateIn
from bitworks.services import conversations

app = HttpApp()


@app.route("POST", "/conversations", status=201, body=ConversationCreateIn, response="ConversationOut", errors_=(401, 403, 422))
def create_conversation(req: Request) -> dict:
    """Start a conversation owned by the caller (optional title, template_id, initial context)."""
    return conversations.create(req.session, req.principal, req.body)


handler = app.handler
