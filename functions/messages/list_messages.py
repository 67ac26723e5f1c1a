from bitworks.api import HttpApp, Request
from bitworks.services import history

app = HttpApp()

MAX_SEQ = 2**63 - 1


@app.route(
    "GET",
    "/conversations/{conversation_id}/messages",
    response="MessageOut",
    query=("limit", "before", "after"),
    errors_=(401, 403, 404, 422),
    scope="messages:read",
)
def list_messages(req: Request) -> dict:
    """History, oldest first: the newest page, or ?before=SEQ (older) / ?after=SEQ (newer)."""
    return history.list_messages(
        req.session,
        req.principal,
        req.path_uuid("conversation_id"),
        limit=req.limit,
        before=req.query_int("before", None, 0, MAX_SEQ),
        after=req.query_int("after", None, 0, MAX_SEQ),
    )


handler = app.handler
