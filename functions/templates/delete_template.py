from bitworks.api import HttpApp, Request
from bitworks.services import templates

app = HttpApp()


@app.route("DELETE", "/templates/{template_id}", status=204, errors_=(401, 403, 404, 422))
def delete_template(req: Request) -> None:
    """Delete a template (admins); conversations using it continue without one."""
    templates.delete(req.session, req.principal, req.path_uuid("template_id"))


handler = app.handler
