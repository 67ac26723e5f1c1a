from bitworks.api import HttpApp, Request
from bitworks.services import conversations

app = HttpApp()


@app.route(
    "GET",
    "/conversations",
    response="ConversationOut",
    query=("limit", "cursor", "user_id", "client_id"),
    errors_=(401, 403, 404, 422),
    scope="conversations:read",
)
def list_conversations(req: Request) -> dict:
    """A user's own conversations; an admin's whole client (?user_id= filters), newest activity first."""
    return conversations.list_conversations(
        req.session,
        req.principal,
        client_id=req.query_uuid("client_id"),
        user_id=req.query_uuid("user_id"),
        cursor=req.query("cursor"),
        limit=req.limit,
    )


handler = app.handler
