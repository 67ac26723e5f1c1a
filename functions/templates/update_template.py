from bitworks.api import HttpApp, Request
from bitworks.bodies import TemplateUpdateIn
from bitworks.services import templates

app = HttpApp()


@app.route("PUT", "/templates/{template_id}", body=TemplateUpdateIn, response="TemplateOut", errors_=(401, 403, 404, 409, 422))
def update_template(req: Request) -> dict:
    """Change a template (admins)."""
    return templates.update(req.session, req.principal, req.path_uuid("template_id"), req.body)


handler = app.handler
