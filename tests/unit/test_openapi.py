"""docs/openapi.json is generated from the code: fail when it is stale or misses a route."""

from __future__ import annotations

import json

from tools.openapi import OUTPUT, build
from tools.template import functions, handler_path, http_routes


def test_every_function_in_the_template_has_its_handler_file():
    missing = [name for name in functions() if not handler_path(name).exists()]
    assert not missing, f"template.yaml names handlers that do not exist: {missing}"


def test_openapi_document_is_current_and_complete():
    current = build()
    committed = json.loads(OUTPUT.read_text())
    assert committed == current, "docs/openapi.json is stale: run `.venv/bin/python -m tools.openapi`"
    documented = {(m.upper(), p) for p, ops in current["paths"].items() for m in ops}
    declared = {route for route in http_routes() if route != ("OPTIONS", "/{proxy+}")}
    assert declared <= documented, f"routes missing from the OpenAPI document: {sorted(declared - documented)}"
