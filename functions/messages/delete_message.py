from bitworks.api import HttpApp, Request
from bitworks.services import history

app = HttpApp()


@app.route("DELETE", "/messages/{message_id}", status=204, errors_=(401, 404, 409, 422))
def delete_message(req: Request) -> None:
    """Delete one message (its conversation's owner or an admin); seq numbers are not reused."""
    history.delete_message(req.session, req.principal, req.path_uuid("message_id"))


handler = app.handler
