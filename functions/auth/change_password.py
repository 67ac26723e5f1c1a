from bitworks.api import HttpApp, Request
from bitworks.bodies import PasswordChangeIn
from bitworks.services import auth

app = HttpApp()


@app.route("PUT", "/auth/password", status=204, body=PasswordChangeIn, errors_=(401, 422))
def change_password(req: Request) -> None:
    """Change the password; every other token of the user stops working."""
    auth.change_password(req.session, req.principal, req.body)


handler = app.handler
