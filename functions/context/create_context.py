from bitworks.api import HttpApp, Request
from bitworks.bodies import ContextIn
from bitworks.services import context

app = HttpApp()


@app.route(
    "POST",
    "/conversations/{conversation_id}/context",
    status=201,
    body=ContextIn,
    response="ContextOut",
    errors_=(401, 404, 409, 422),
)
def create_context(req: Request) -> dict:
    """Create the conversation's context; 409 when it already has one."""
    return context.create(req.session, req.principal, req.path_uuid("conversation_id"), req.body)


handler = app.handler
