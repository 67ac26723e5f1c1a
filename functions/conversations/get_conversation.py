from bitworks.api import HttpApp, Request
from bitworks.services import conversations

app = HttpApp()


@app.route(
    "GET",
    "/conversations/{conversation_id}",
    response="ConversationOut",
    errors_=(401, 403, 404, 422),
    scope="conversations:read",
)
def get_conversation(req: Request) -> dict:
    """One conversation (its owner, or an admin of its client)."""
    return conversations.get(req.session, req.principal, req.path_uuid("conversation_id"))


handler = app.handler
