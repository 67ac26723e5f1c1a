from bitworks.api import HttpApp, Request
from bitworks.services import templates

app = HttpApp()


@app.route("GET", "/templates/{template_id}", response="TemplateOut", errors_=(401, 404, 422))
def get_template(req: Request) -> dict:
    """One template, with the {{variables}} its content uses."""
    return templates.get(req.session, req.principal, req.path_uuid("template_id"))


handler = app.handler
