from bitworks.api import HttpApp, Reply, Request
from bitworks.bodies import ImportIn
from bitworks.services import imports

app = HttpApp()


@app.route("POST", "/admin/import", status=202, body=ImportIn, errors_=(401, 403, 404, 413, 422, 502))
def start_import(req: Request) -> Reply:
    """Queue a bulk import (up to 1,000 users and templates); poll GET /admin/import/{job_id}."""
    return Reply(202, imports.start(req.session, req.principal, req.body))


handler = app.handler
