from bitworks.api import HttpApp, Request
from bitworks.services import users

app = HttpApp()


@app.route("GET", "/users/{user_id}/conversations", response="ConversationOut", query=("limit", "cursor"), errors_=(401, 404, 422))
def list_user_conversations(req: Request) -> dict:
    """Conversations of one user, most recently updated first (admins, or that user)."""
    return users.list_conversations(req.session, req.principal, req.path_uuid("user_id"), req.limit, req.query("cursor"))


handler = app.handler
