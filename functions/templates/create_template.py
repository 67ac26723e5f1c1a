from bitworks.api import HttpApp, Request
from bitworks.bodies import TemplateCreateIn
from bitworks.services import templates

app = HttpApp()


@app.route("POST", "/templates", status=201, body=TemplateCreateIn, response="TemplateOut", errors_=(401, 403, 404, 409, 422))
def create_template(req: Request) -> dict:
    """Create a template of the client (admins; superadmins name client_id)."""
    return templates.create(req.session, req.principal, req.body)


handler = app.handler
