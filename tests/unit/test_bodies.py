"""bitworks.bodies (pydantic-core, at runtime) accepts, shapes and refuses exactly as the pydantic
models of bitworks.schemas (the OpenAPI document's source) do: same values, same fields given,
same errors, on generated bodies full of edge values."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from bitworks import bodies, schemas

ABSENT = object()
UUID = "3f2b8c1e-9a4d-4c7e-8b1a-2d3e4f5a6b7c"
STRINGS = [
    "",
    " ",
    "a",
    "   x  ",
    "seven77",
    "eight888",
    "x" * 100,
    "x" * 101,
    "x" * 201,
    "x" * 257,
    "x" * 2001,
    "x" * 16001,
    "x" * 20001,
    "nul\x00inside",
    "Bob@Example.com",
    " bob@example.com ",
    "not-an-email",
    "a@b",
    "my-slug-1",
    "Bad_Slug",
    "-dash",
    "https://n8n.example/webhook/x",
    "ftp://nope",
    "https://app.example",
    "https://app.example/path",
    "http://localhost:3000",
    UUID,
    "not-a-uuid",
    "user",
    "admin",
    "superadmin",
    "assistant",
    "system",
    "open",
    "closed",
    "bot",
    "human",
    "messages:read",
    "conversations:read",
    "2026-11-22T07:05:09Z",
    "yesterday",
]
SCALARS = [None, True, False, 0, 1, 10, 200, 201, -1, 1.5, 10.0, 1e400, *STRINGS]
VALUES = st.recursive(
    st.sampled_from(SCALARS),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(st.sampled_from(["https://a.example", "messages:read", "context:read", "x"]), max_size=60),
        st.dictionaries(st.sampled_from(["message_rate_per_minute", "context_window", "k", "nul\x00key"]), inner, max_size=3),
    ),
    max_leaves=6,
)


def _body(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    names = [*model.model_fields, "unknown_field"]
    per_field = {n: st.one_of(st.just(ABSENT), VALUES) for n in names}
    if "context" in model.model_fields:
        nested = st.fixed_dictionaries({}, optional={"context_window": VALUES, "parameters": VALUES, "x": VALUES})
        per_field["context"] = st.one_of(st.just(ABSENT), st.none(), nested)
    return st.fixed_dictionaries(per_field).map(lambda d: {k: v for k, v in d.items() if v is not ABSENT})


def _plain(value: Any) -> Any:
    if isinstance(value, bodies.Body):
        return {k: _plain(v) for k, v in value.fields().items()}
    if isinstance(value, BaseModel):
        return {k: _plain(getattr(value, k)) for k in type(value).model_fields}
    return value


def _errors(exc: ValidationError) -> list[tuple[Any, ...]]:
    return [(e["type"], e["loc"], e["msg"]) for e in exc.errors(include_url=False, include_input=False)]


def _outcome(validate: Any, raw: bytes) -> tuple[str, Any, Any]:
    try:
        result = validate(raw)
    except ValidationError as exc:
        return "invalid", _errors(exc), None
    return "valid", _plain(result), set(result.model_fields_set)


PAIRS = [(spec, getattr(schemas, spec.doc)) for spec in bodies.ALL]


@pytest.mark.parametrize(("spec", "model"), PAIRS, ids=[s.doc for s, _ in PAIRS])
def test_same_answers_as_the_pydantic_model(spec: bodies.Spec, model: type[BaseModel]) -> None:
    @settings(max_examples=250, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(_body(model))
    def check(data: dict[str, Any]) -> None:
        raw = json.dumps(data, allow_nan=True).encode()
        ours = _outcome(spec.validate_json, raw)
        theirs = _outcome(lambda r: model.model_validate_json(r, strict=True), raw)
        assert ours == theirs, data

    check()


@pytest.mark.parametrize(("spec", "model"), PAIRS, ids=[s.doc for s, _ in PAIRS])
def test_same_fields_and_requirements(spec: bodies.Spec, model: type[BaseModel]) -> None:
    ours = _outcome(spec.validate_json, b"{}")
    theirs = _outcome(lambda r: model.model_validate_json(r, strict=True), b"{}")
    assert ours == theirs
    for bad in (b"[]", b'"x"', b"null", b"{", b'{"a": 1,}'):
        assert _outcome(spec.validate_json, bad) == _outcome(lambda r: model.model_validate_json(r, strict=True), bad)


def test_a_body_never_shows_its_values() -> None:
    body = bodies.LoginIn.validate_json(b'{"email": "a@b.example", "password": "hunter2-secret"}')
    assert "hunter2" not in repr(body) and body.password == "hunter2-secret"
    assert body.model_fields_set == {"email", "password"} and body.client_id is None


SWEEP = [
    *SCALARS,
    [],
    ["https://a.example"],
    ["https://a.example/x"],
    ["messages:read"],
    ["messages:read", "nope"],
    ["x"] * 51,
    {},
    {"message_rate_per_minute": 5},
    {"message_rate_per_minute": 0},
    {"message_rate_per_minute": True},
    {"k": float("nan")},
    {"nul\x00key": 1},
    {"context_window": 5},
    {"context_window": 0, "parameters": {"a": [1, "\x00"]}},
]


@pytest.mark.parametrize(("spec", "model"), PAIRS, ids=[s.doc for s, _ in PAIRS])
def test_every_field_against_every_edge_value(spec: bodies.Spec, model: type[BaseModel]) -> None:
    """Systematic where the generated bodies are random: each field alone, with each edge value."""
    checked = 0
    for name in model.model_fields:
        for value in SWEEP:
            raw = json.dumps({name: value}, allow_nan=True).encode()
            ours = _outcome(spec.validate_json, raw)
            assert ours == _outcome(lambda r: model.model_validate_json(r, strict=True), raw), (name, value)
            checked += 1
    assert checked == len(model.model_fields) * len(SWEEP)


def test_every_body_is_covered() -> None:
    specs = {v for v in vars(bodies).values() if isinstance(v, bodies.Spec)}
    assert specs == set(bodies.ALL)
    assert all(isinstance(getattr(schemas, s.doc, None), type) for s in specs)
