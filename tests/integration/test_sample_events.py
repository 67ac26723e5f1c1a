"""events/ holds a working sample event for every function in template.yaml."""

from __future__ import annotations

import json

import pytest

from tests.support.events import LambdaContext
from tests.support.template import ROOT, functions, load_handler

EVENTS = ROOT / "events"


def test_every_function_has_a_sample_event():
    missing = [name for name in functions() if not (EVENTS / f"{name}.json").exists()]
    assert not missing, missing


def _http_functions():
    for name, props in sorted(functions().items()):
        for event in (props.get("Events") or {}).values():
            if event["Type"] == "HttpApi":
                yield name, f"{event['Properties']['Method']} {event['Properties']['Path']}"


@pytest.mark.parametrize(("name", "route_key"), list(_http_functions()))
def test_http_sample_event_matches_its_route_and_is_answered(db, name, route_key):
    event = json.loads((EVENTS / f"{name}.json").read_text())
    assert event["version"] == "2.0"
    if route_key != "OPTIONS /{proxy+}":
        assert event["routeKey"] == route_key == event["requestContext"]["routeKey"]
    response = load_handler(name)(event, LambdaContext(name))
    # The samples carry a token signed with another key and ids that do not exist here: the
    # function must still answer in the documented shape, never with a 500.
    assert 200 <= response["statusCode"] < 500, (name, response)
    if response.get("body"):
        body = json.loads(response["body"])
        assert isinstance(body, dict)
        if response["statusCode"] >= 400:
            assert set(body["error"]) >= {"code", "message"}
