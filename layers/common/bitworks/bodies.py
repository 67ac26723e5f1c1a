"""Request bodies, validated by pydantic-core directly.

The rules are those of bitworks.schemas (the pydantic models the OpenAPI document is built from);
tests/unit/test_bodies.py runs both on the same inputs and requires the same values, the same
fields given and the same errors. Why two spellings: a function that parses a body used to import
pydantic's model machinery and build the model classes at cold start (~40 ms of a ~450 ms init);
pydantic-core alone is what `import pydantic` loads anyway, and a validator here is built on its
first use.

A validated body is a `Body`: attribute access to the fields, and `model_fields_set`, the
fields the caller gave (for partial updates), as on a pydantic model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic_core import SchemaValidator, core_schema

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{1,63}$")
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?$")
_ORIGIN = re.compile(r"^https?://[^\s/]+$")
_URL = re.compile(r"^https?://[^\s/]+")

API_KEY_SCOPES = ("conversations:read", "messages:read", "messages:write", "context:read")


# -- checks (shared with bitworks.schemas) ------------------------------------------------------
def normalise_email(value: str) -> str:
    value = value.strip().lower()
    if len(value) > 320 or not _EMAIL.match(value):
        raise ValueError("must be an email address")
    return value


def storable(value: Any) -> Any:
    """Postgres TEXT and JSONB refuse NUL characters, JSONB refuses NaN/Infinity: a 422 here, not a 500 later."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("must be a finite number")
    elif isinstance(value, dict):
        for key, item in value.items():
            storable(key)
            storable(item)
    elif isinstance(value, list):
        for item in value:
            storable(item)
    return value


def slug(value: str | None) -> str | None:
    if value is not None and not _SLUG.match(value):
        raise ValueError("lowercase letters, digits and dashes only")
    return value


def webhook_url(value: str | None) -> str | None:
    if value is not None and not _URL.match(value):
        raise ValueError("must be an http(s) URL")
    return value


def origins(value: list[str] | None) -> list[str] | None:
    for origin in value or ():
        if not _ORIGIN.match(origin):
            raise ValueError("each origin is scheme://host[:port] with no path")
    return value


def client_settings(value: dict[str, Any] | None) -> dict[str, Any] | None:
    rate = (value or {}).get("message_rate_per_minute")
    if rate is not None and (not isinstance(rate, int) or isinstance(rate, bool) or not 1 <= rate <= 10000):
        raise ValueError("message_rate_per_minute must be an integer from 1 to 10000")
    return value


def email_or_none(value: str | None) -> str | None:
    return None if value is None else normalise_email(value)


def not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


# -- the validated object -----------------------------------------------------------------------
class Body:
    __slots__ = ("_values", "model_fields_set")

    def __init__(self, values: dict[str, Any], fields_set: set[str]) -> None:
        self._values = values
        self.model_fields_set = fields_set

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def fields(self) -> dict[str, Any]:
        return dict(self._values)

    def __repr__(self) -> str:  # never the values: passwords pass through here
        return f"Body(fields={sorted(self._values)})"


def _to_body(parts: tuple[dict[str, Any], Any, set[str]]) -> Body:
    values, _extra, fields_set = parts
    return Body(values, fields_set)


# -- field spelling -----------------------------------------------------------------------------
_REQUIRED: Any = object()


def _str(min_length: int | None = None, max_length: int | None = None) -> core_schema.CoreSchema:
    return core_schema.str_schema(min_length=min_length, max_length=max_length)


def _field(
    schema: core_schema.CoreSchema,
    *,
    default: Any = _REQUIRED,
    factory: Callable[[], Any] | None = None,
    nullable: bool = False,
    check: Callable[[Any], Any] | None = None,
) -> core_schema.ModelField:
    # pydantic's order: the type (None allowed first), then Input's `*` validator, then the field's.
    if nullable:
        schema = core_schema.nullable_schema(schema)
    schema = core_schema.no_info_after_validator_function(storable, schema)
    if check is not None:
        schema = core_schema.no_info_after_validator_function(check, schema)
    if factory is not None:
        schema = core_schema.with_default_schema(schema, default_factory=factory)
    elif default is not _REQUIRED:
        schema = core_schema.with_default_schema(schema, default=default)
    return core_schema.model_field(schema)


def _literal(*values: str) -> core_schema.CoreSchema:
    return core_schema.literal_schema(list(values))


def _json_object() -> core_schema.CoreSchema:
    return core_schema.dict_schema(core_schema.str_schema(), core_schema.any_schema())


def _model(fields: dict[str, core_schema.ModelField]) -> core_schema.CoreSchema:
    inner = core_schema.model_fields_schema(fields, extra_behavior="forbid")
    return core_schema.no_info_after_validator_function(_to_body, inner)


class Spec:
    """One body: its fields, its validator (built on first use) and the schemas model documenting it."""

    def __init__(self, doc: str, fields: dict[str, core_schema.ModelField]) -> None:
        self.doc = doc
        self.schema = _model(fields)
        self._validator: SchemaValidator | None = None

    @property
    def validator(self) -> SchemaValidator:
        if self._validator is None:
            self._validator = SchemaValidator(self.schema, core_schema.CoreConfig(str_max_length=20000))
        return self._validator

    def validate_json(self, raw: bytes) -> Body:
        body: Body = self.validator.validate_json(raw, strict=True)
        return body

    def validate_python(self, data: Any) -> Body:
        body: Body = self.validator.validate_python(data, strict=True)
        return body

    def __repr__(self) -> str:
        return f"Spec({self.doc})"


# -- the bodies ---------------------------------------------------------------------------------
_UUID = core_schema.uuid_schema
_CONTENT = (1, 16000)

RegisterIn = Spec(
    "RegisterIn",
    {
        "email": _field(_str(), check=normalise_email),
        "password": _field(_str(8, 256)),
        "client_id": _field(_UUID()),
    },
)
LoginIn = Spec(
    "LoginIn",
    {
        "email": _field(_str(), check=normalise_email),
        "password": _field(_str(1, 256)),
        "client_id": _field(_UUID(), default=None, nullable=True),
    },
)
PasswordChangeIn = Spec(
    "PasswordChangeIn",
    {"current_password": _field(_str(1, 256)), "new_password": _field(_str(8, 256))},
)
ClientCreateIn = Spec(
    "ClientCreateIn",
    {
        "name": _field(_str(1, 200)),
        "slug": _field(_str(1, 100), check=slug),
        "n8n_webhook_url": _field(_str(max_length=2000), default=None, nullable=True, check=webhook_url),
        "n8n_auth_header_name": _field(_str(max_length=200), default=None, nullable=True),
        "n8n_auth_header_value": _field(_str(max_length=2000), default=None, nullable=True),
        "allow_signup": _field(core_schema.bool_schema(), default=False),
        "allowed_origins": _field(core_schema.list_schema(_str(), max_length=50), factory=list, check=origins),
        "settings": _field(_json_object(), factory=dict, check=client_settings),
    },
)
ClientUpdateIn = Spec(
    "ClientUpdateIn",
    {
        "name": _field(_str(1, 200), default=None, nullable=True),
        "slug": _field(_str(1, 100), default=None, nullable=True, check=slug),
        "n8n_webhook_url": _field(_str(max_length=2000), default=None, nullable=True, check=webhook_url),
        "n8n_auth_header_name": _field(_str(max_length=200), default=None, nullable=True),
        "n8n_auth_header_value": _field(_str(max_length=2000), default=None, nullable=True),
        "allow_signup": _field(core_schema.bool_schema(), default=None, nullable=True),
        "allowed_origins": _field(core_schema.list_schema(_str(), max_length=50), default=None, nullable=True, check=origins),
        "settings": _field(_json_object(), default=None, nullable=True, check=client_settings),
        "rotate_signing_secret": _field(core_schema.bool_schema(), default=False),
    },
)
UserCreateIn = Spec(
    "UserCreateIn",
    {
        "email": _field(_str(), check=normalise_email),
        "password": _field(_str(8, 256)),
        "role": _field(_literal("user", "admin"), default="user"),
        "display_name": _field(_str(max_length=200), default=None, nullable=True),
        "client_id": _field(_UUID(), default=None, nullable=True),
    },
)
UserUpdateIn = Spec(
    "UserUpdateIn",
    {
        "email": _field(_str(), default=None, nullable=True, check=email_or_none),
        "password": _field(_str(8, 256), default=None, nullable=True),
        "role": _field(_literal("user", "admin"), default=None, nullable=True),
        "display_name": _field(_str(max_length=200), default=None, nullable=True),
        "current_password": _field(_str(1, 256), default=None, nullable=True),
    },
)
TemplateCreateIn = Spec(
    "TemplateCreateIn",
    {
        "name": _field(_str(1, 200)),
        "content": _field(_str(*_CONTENT)),
        "description": _field(_str(max_length=2000), default=None, nullable=True),
        "client_id": _field(_UUID(), default=None, nullable=True),
    },
)
TemplateUpdateIn = Spec(
    "TemplateUpdateIn",
    {
        "name": _field(_str(1, 200), default=None, nullable=True),
        "content": _field(_str(*_CONTENT), default=None, nullable=True),
        "description": _field(_str(max_length=2000), default=None, nullable=True),
    },
)
_CONTEXT_FIELDS = {
    "context_window": _field(core_schema.int_schema(ge=1, le=200), default=10),
    "parameters": _field(_json_object(), factory=dict),
}
ContextIn = Spec("ContextIn", _CONTEXT_FIELDS)
ConversationCreateIn = Spec(
    "ConversationCreateIn",
    {
        "title": _field(_str(max_length=500), default=None, nullable=True),
        "template_id": _field(_UUID(), default=None, nullable=True),
        "context": _field(_model(_CONTEXT_FIELDS), default=None, nullable=True),
    },
)
ConversationUpdateIn = Spec(
    "ConversationUpdateIn",
    {
        "title": _field(_str(max_length=500), default=None, nullable=True),
        "status": _field(_literal("open", "closed"), default=None, nullable=True),
        "template_id": _field(_UUID(), default=None, nullable=True),
        "mode": _field(_literal("bot", "human"), default=None, nullable=True),
    },
)
MessageCreateIn = Spec(
    "MessageCreateIn",
    {
        "content": _field(_str(*_CONTENT), check=not_blank),
        "client_message_id": _field(_str(1, 100), default=None, nullable=True),
    },
)
AgentMessageIn = Spec(
    "AgentMessageIn",
    {
        "role": _field(_literal("assistant", "system"), default="assistant"),
        "content": _field(_str(*_CONTENT)),
        "client_message_id": _field(_str(1, 100), default=None, nullable=True),
        "metadata": _field(_json_object(), factory=dict),
    },
)
ReplyIn = Spec(
    "ReplyIn",
    {
        "message_id": _field(_UUID()),
        "content": _field(_str(*_CONTENT)),
        "metadata": _field(_json_object(), factory=dict),
    },
)
ApiKeyCreateIn = Spec(
    "ApiKeyCreateIn",
    {
        "name": _field(_str(1, 200)),
        "scopes": _field(core_schema.list_schema(_literal(*API_KEY_SCOPES), min_length=1, max_length=len(API_KEY_SCOPES))),
        "expires_at": _field(core_schema.datetime_schema(), default=None, nullable=True),
        "client_id": _field(_UUID(), default=None, nullable=True),
    },
)
ImportUserRow = Spec(
    "ImportUserRow",
    {
        "email": _field(_str(), check=normalise_email),
        "password": _field(_str(8, 256)),
        "role": _field(_literal("user", "admin"), default="user"),
        "display_name": _field(_str(max_length=200), default=None, nullable=True),
    },
)
ImportTemplateRow = Spec(
    "ImportTemplateRow",
    {
        "name": _field(_str(1, 200)),
        "content": _field(_str(*_CONTENT)),
        "description": _field(_str(max_length=2000), default=None, nullable=True),
    },
)
ImportIn = Spec(
    "ImportIn",
    {
        "client_id": _field(_UUID(), default=None, nullable=True),
        "users": _field(core_schema.list_schema(_json_object()), factory=list),
        "templates": _field(core_schema.list_schema(_json_object()), factory=list),
    },
)

ALL = (
    RegisterIn,
    LoginIn,
    PasswordChangeIn,
    ClientCreateIn,
    ClientUpdateIn,
    UserCreateIn,
    UserUpdateIn,
    TemplateCreateIn,
    TemplateUpdateIn,
    ContextIn,
    ConversationCreateIn,
    ConversationUpdateIn,
    MessageCreateIn,
    AgentMessageIn,
    ReplyIn,
    ApiKeyCreateIn,
    ImportUserRow,
    ImportTemplateRow,
    ImportIn,
)
