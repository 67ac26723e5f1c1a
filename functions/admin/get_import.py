from bitworks.api import HttpApp, Request
from bitworks.services import imports

app = HttpApp()


@app.route("GET", "/admin/import/{job_id}", errors_=(401, 403, 404, 422))
def get_import(req: Request) -> dict:
    """An import job: status, counts and per-row errors."""
    return imports.get(req.session, req.principal, req.path_uuid("job_id"))


handler = app.handler
