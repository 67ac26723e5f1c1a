from bitworks.api import HttpApp, Request
from bitworks.services import context

app = HttpApp()


@app.route(
    "GET",
    "/conversations/{conversation_id}/context",
    response="ContextOut",
    errors_=(401, 403, 404, 422),
    scope="context:read",
)
def get_context(req: Request) -> dict:
    """The context (defaults when none is stored) and the messages the next turn would see."""
    return context.get(req.session, req.principal, req.path_uuid("conversation_id"))


handler = app.handler
