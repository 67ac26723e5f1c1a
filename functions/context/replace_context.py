from bitworks.api import HttpApp, Request
from bitworks.bodies import ContextIn
from bitworks.services import context

app = HttpApp()


@app.route("PUT", "/conversations/{conversation_id}/context", body=ContextIn, response="ContextOut", errors_=(401, 404, 422))
def replace_context(req: Request) -> dict:
    """Create or replace the conversation's context."""
    return context.replace(req.session, req.principal, req.path_uuid("conversation_id"), req.body)


handler = app.handler
