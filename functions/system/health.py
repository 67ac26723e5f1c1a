from bitworks.api import HttpApp, Reply, Request
from bitworks.services import system

app = HttpApp()


@app.route("GET", "/health", auth=False, errors_=(503,))
def health(_req: Request) -> Reply:
    """Liveness and database reachability: 200 ok, 503 degraded."""
    status, body = system.health()
    return Reply(status, body)


handler = app.handler
