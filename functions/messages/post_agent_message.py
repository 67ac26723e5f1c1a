from bitworks.api import HttpApp, Reply, Request
from bitworks.bodies import AgentMessageIn
from bitworks.services import chat

app = HttpApp()


@app.route(
    "POST",
    "/conversations/{conversation_id}/agent-messages",
    status=201,
    body=AgentMessageIn,
    response="MessageOut",
    errors_=(403, 404, 409),
    scope="messages:write",
)
def post_agent_message(req: Request) -> dict | Reply:
    """n8n (API key, messages:write) or an admin posts an assistant/system message, pushed live."""
    message, created = chat.post_agent_message(req.session, req.principal, req.path_uuid("conversation_id"), req.body)
    return {"message": message} if created else Reply(200, {"message": message})


handler = app.handler
