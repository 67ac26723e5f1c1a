"""Build the OpenAPI 3.1 document of the HTTP API from the code: every function named in
template.yaml registers its route on a bitworks.api.HttpApp with its body/response models; this
merges them. `python -m tools.openapi` rewrites docs/openapi.json; a test fails when it is stale."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "openapi.json"

STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    400: "Bad request or invalid JSON",
    401: "Missing, invalid or expired token",
    403: "Role may not do this",
    404: "Not found (or not yours)",
    409: "Conflict",
    413: "Payload too large",
    422: "Validation error",
    429: "Rate limited",
    502: "Upstream (n8n) error",
    503: "Degraded",
    504: "Upstream timeout",
}
PATH_PARAM_FORMAT = {"proxy": None}


def _env() -> None:
    os.environ.setdefault("DATABASE_URL", "postgresql://openapi@localhost/none")
    os.environ.setdefault("JWT_SECRET", "openapi-generation-only-" + "x" * 16)
    for extra in (ROOT, ROOT / "layers" / "common"):
        if str(extra) not in sys.path:
            sys.path.insert(0, str(extra))


def collect() -> list[tuple[str, Any]]:
    """(function logical id, RouteSpec) for every HttpApp route of every function."""
    _env()
    from tools.template import functions, handler_path, load_handler

    specs = []
    for logical_id in sorted(functions()):
        if not handler_path(logical_id).exists():
            continue  # reported by the completeness test
        handler = load_handler(logical_id)
        app = getattr(handler, "__self__", None)
        for spec in getattr(app, "routes", []):
            specs.append((logical_id, spec))
    return specs


def _schema(model: Any, components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _envelope(spec: Any, ref: dict[str, Any]) -> dict[str, Any]:
    """The body as sent (ARCHITECTURE.md "Shapes"): a list route answers {"items", "next_cursor"},
    a single resource is wrapped in its noun (UserOut -> {"user": ...}, ApiKeyOut -> {"api_key": ...})."""
    if "limit" in spec.query:
        return {
            "type": "object",
            "required": ["items", "next_cursor"],
            "properties": {"items": {"type": "array", "items": ref}, "next_cursor": {"type": ["string", "null"]}},
        }
    noun = re.sub(r"(?<!^)(?=[A-Z])", "_", spec.response_model.__name__.removesuffix("Out")).lower()
    return {"type": "object", "required": [noun], "properties": {noun: ref}}


def build() -> dict[str, Any]:
    from bitworks import schemas

    _env()
    from bitworks.schemas import ErrorOut

    components: dict[str, Any] = {}
    error_ref = _schema(ErrorOut, components)
    paths: dict[str, Any] = {}
    for logical_id, spec in collect():
        operation: dict[str, Any] = {
            "operationId": spec.name,
            "summary": spec.summary,
            "x-lambda-function": logical_id,
            "responses": {},
        }
        params = []
        for part in spec.path.split("/"):
            if part.startswith("{"):
                name = part.strip("{}+")
                schema: dict[str, Any] = {"type": "string"}
                if name.endswith("_id"):
                    schema["format"] = "uuid"
                params.append({"name": name, "in": "path", "required": True, "schema": schema})
        for name in spec.query:
            params.append({"name": name, "in": "query", "required": False, "schema": {"type": "string"}})
        if params:
            operation["parameters"] = params
        if spec.auth:
            operation["security"] = [{"bearer": []}]
        if spec.body is not None:
            operation["requestBody"] = {
                "required": True,
                # Documented by the pydantic model the runtime validator is proven equal to (tests/unit/test_bodies).
                "content": {"application/json": {"schema": _schema(getattr(schemas, spec.body.doc), components)}},
            }
        ok: dict[str, Any] = {"description": STATUS_TEXT.get(spec.status, "OK")}
        if spec.response is not None and spec.status != 204:
            ok["content"] = {"application/json": {"schema": _envelope(spec, _schema(spec.response_model, components))}}
        operation["responses"][str(spec.status)] = ok
        codes = set(spec.errors)
        if spec.body is not None:
            codes |= {400, 413, 422}
        if spec.auth:
            codes |= {401}
        if params or spec.query:
            codes |= {422}
        for code in sorted(codes):
            operation["responses"][str(code)] = {
                "description": STATUS_TEXT.get(code, "Error"),
                "content": {"application/json": {"schema": error_ref}},
            }
        paths.setdefault(spec.path, {})[spec.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Bitworks Message HTTP API",
            "version": "1.0.0",
            "description": "Generated by tools/openapi.py from the route handlers (see ARCHITECTURE.md).",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT or bwk_ API key"}},
        },
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
