from bitworks.api import HttpApp, Request
from bitworks.services import conversations

app = HttpApp()


@app.route("DELETE", "/conversations/{conversation_id}", status=204, errors_=(401, 404, 422))
def delete_conversation(req: Request) -> None:
    """Delete a conversation with its messages and context."""
    conversations.delete_conversation(req.session, req.principal, req.path_uuid("conversation_id"))


handler = app.handler
