from bitworks.api import HttpApp, Request
from bitworks.services import templates

app = HttpApp()


@app.route("GET", "/templates", response="TemplateOut", query=("limit", "cursor", "client_id"), errors_=(401, 404, 422))
def list_templates(req: Request) -> dict:
    """List the client's templates, newest first."""
    return templates.list_templates(req.session, req.principal, req.query_uuid("client_id"), req.limit, req.query("cursor"))


handler = app.handler
