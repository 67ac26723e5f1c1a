from bitworks.api import HttpApp, Request
from bitworks.bodies import ConversationUpdateIn
from bitworks.services import conversations

app = HttpApp()


@app.route(
    "PUT",
    "/conversations/{conversation_id}",
    body=ConversationUpdateIn,
    response="ConversationOut",
    errors_=(401, 404, 422),
)
def update_conversation(req: Request) -> dict:
    """Change title, status, template_id or mode; pushes conversation.updated to its connections."""
    return conversations.update(req.session, req.principal, req.path_uuid("conversation_id"), req.body)


handler = app.handler
