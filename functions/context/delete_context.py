from bitworks.api import HttpApp, Request
from bitworks.services import context

app = HttpApp()


@app.route("DELETE", "/conversations/{conversation_id}/context", status=204, errors_=(401, 404, 422))
def delete_context(req: Request) -> None:
    """Delete the stored context (404 when there is none); GET then answers the defaults."""
    context.delete_context(req.session, req.principal, req.path_uuid("conversation_id"))


handler = app.handler
