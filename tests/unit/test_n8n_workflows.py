"""The example n8n workflows are well-formed and call the routes that exist."""

from __future__ import annotations

import json

from tests.support.template import ROOT, http_routes

N8N = ROOT / "n8n"


def _load(name: str) -> dict:
    return json.loads((N8N / name).read_text())


def test_every_workflow_is_connected_and_has_a_fixed_id():
    for path in sorted(N8N.glob("workflow-*.json")):
        workflow = json.loads(path.read_text())
        names = {node["name"] for node in workflow["nodes"]}
        assert workflow["id"] and len(workflow["id"]) == 16, path.name
        for source, outputs in workflow["connections"].items():
            assert source in names, (path.name, source)
            for branch in outputs["main"]:
                assert all(link["node"] in names for link in branch), (path.name, branch)


def test_follow_up_workflow_posts_an_agent_message_with_a_header_auth_key():
    workflow = _load("workflow-followup.json")
    request = next(n for n in workflow["nodes"] if n["type"] == "n8n-nodes-base.httpRequest")
    assert request["parameters"]["method"] == "POST"
    assert request["parameters"]["url"].endswith("/conversations/{{ $json.conversation_id }}/agent-messages")
    assert ("POST", "/conversations/{conversation_id}/agent-messages") in http_routes()
    assert request["parameters"]["genericAuthType"] == "httpHeaderAuth"
    assert "httpHeaderAuth" in request["credentials"]
    body = request["parameters"]["jsonBody"]
    assert "client_message_id" in body and "role: 'assistant'" in body
    triggers = {n["type"] for n in workflow["nodes"]}
    assert {"n8n-nodes-base.scheduleTrigger", "n8n-nodes-base.manualTrigger"} <= triggers
