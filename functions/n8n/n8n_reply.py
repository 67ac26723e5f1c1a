from bitworks.api import HttpApp, Reply, Request
from bitworks.bodies import ReplyIn
from bitworks.services import chat

app = HttpApp()


@app.route("POST", "/n8n/replies", status=201, auth=False, body=ReplyIn, response="MessageOut", errors_=(400, 401, 409, 413, 422))
def n8n_reply(req: Request) -> dict | Reply:
    """n8n's callback with the reply token it was sent: stores and pushes the assistant reply."""
    # The reply token, not a user JWT: checked before the body is even parsed.
    claims = chat.authenticate_reply(req.header("authorization"))
    message, created = chat.receive_reply(req.session, claims, req.body)
    return {"message": message} if created else Reply(200, {"message": message})


handler = app.handler
