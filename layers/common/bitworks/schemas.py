"""Request bodies (validated strictly: unknown fields and wrong types are 422) and the response
shapes the OpenAPI document publishes. Responses are built by `views`, not by these models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The rules live with the runtime validators (bitworks.bodies); these models document them.
from bitworks.bodies import API_KEY_SCOPES, client_settings, normalise_email, not_blank, origins, slug, storable, webhook_url

Content = Field(min_length=1, max_length=16000)


class _Output(BaseModel):
    """Response shapes: only the OpenAPI generator builds them, so never at a cold start."""

    model_config = ConfigDict(defer_build=True)


class Input(BaseModel):
    # defer_build: a model's validator is built on its first use, not at import. Each function
    # imports this whole module but validates one or two bodies (cold start: ~40 ms less).
    model_config = ConfigDict(extra="forbid", str_max_length=20000, defer_build=True)

    @field_validator("*")
    @classmethod
    def _storable_values(cls, value: Any) -> Any:
        return storable(value)


class EmailMixin(Input):
    @field_validator("email", check_fields=False)
    @classmethod
    def _email(cls, value: str) -> str:
        return normalise_email(value)


class RegisterIn(EmailMixin):
    email: str
    password: str = Field(min_length=8, max_length=256)
    client_id: uuid.UUID


class LoginIn(EmailMixin):
    email: str
    password: str = Field(min_length=1, max_length=256)
    client_id: uuid.UUID | None = None


class PasswordChangeIn(Input):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=8, max_length=256)


class ClientCreateIn(Input):
    name: str = Field(min_length=1, max_length=200)
    slug: str = Field(min_length=1, max_length=100)
    n8n_webhook_url: str | None = Field(default=None, max_length=2000)
    n8n_auth_header_name: str | None = Field(default=None, max_length=200)
    n8n_auth_header_value: str | None = Field(default=None, max_length=2000)
    allow_signup: bool = False
    allowed_origins: list[str] = Field(default_factory=list, max_length=50)
    settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str) -> str | None:
        return slug(value)

    @field_validator("n8n_webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return webhook_url(value)

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str] | None:
        return origins(value)

    @field_validator("settings")
    @classmethod
    def _settings(cls, value: dict[str, Any]) -> dict[str, Any] | None:
        return client_settings(value)


class ClientUpdateIn(ClientCreateIn):
    name: str | None = Field(default=None, min_length=1, max_length=200)  # type: ignore[assignment]
    slug: str | None = Field(default=None, min_length=1, max_length=100)  # type: ignore[assignment]
    allow_signup: bool | None = None  # type: ignore[assignment]
    allowed_origins: list[str] | None = Field(default=None, max_length=50)  # type: ignore[assignment]
    settings: dict[str, Any] | None = None  # type: ignore[assignment]
    rotate_signing_secret: bool = False

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str | None) -> str | None:  # type: ignore[override]
        return slug(value)

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str] | None) -> list[str] | None:  # type: ignore[override]
        return origins(value)

    @field_validator("settings")
    @classmethod
    def _settings(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:  # type: ignore[override]
        return client_settings(value)


class UserCreateIn(EmailMixin):
    email: str
    password: str = Field(min_length=8, max_length=256)
    role: Literal["user", "admin"] = "user"
    display_name: str | None = Field(default=None, max_length=200)
    client_id: uuid.UUID | None = None


class UserUpdateIn(Input):
    email: str | None = None
    password: str | None = Field(default=None, min_length=8, max_length=256)
    role: Literal["user", "admin"] | None = None
    display_name: str | None = Field(default=None, max_length=200)
    # Required when the caller changes its own email: a stolen token alone must not move the
    # account to another mailbox.
    current_password: str | None = Field(default=None, min_length=1, max_length=256)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return None if value is None else normalise_email(value)


class TemplateCreateIn(Input):
    name: str = Field(min_length=1, max_length=200)
    content: str = Field(min_length=1, max_length=16000)
    description: str | None = Field(default=None, max_length=2000)
    client_id: uuid.UUID | None = None


class TemplateUpdateIn(Input):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    content: str | None = Field(default=None, min_length=1, max_length=16000)
    description: str | None = Field(default=None, max_length=2000)


class ContextIn(Input):
    context_window: int = Field(default=10, ge=1, le=200)
    parameters: dict[str, Any] = Field(default_factory=dict)


class ConversationCreateIn(Input):
    title: str | None = Field(default=None, max_length=500)
    template_id: uuid.UUID | None = None
    context: ContextIn | None = None


class ConversationUpdateIn(Input):
    title: str | None = Field(default=None, max_length=500)
    status: Literal["open", "closed"] | None = None
    template_id: uuid.UUID | None = None
    mode: Literal["bot", "human"] | None = None


class MessageCreateIn(Input):
    content: str = Content
    client_message_id: str | None = Field(default=None, min_length=1, max_length=100)

    @field_validator("content")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        return not_blank(value)


class ReplyIn(Input):
    message_id: uuid.UUID
    content: str = Content
    metadata: dict[str, Any] = Field(default_factory=dict)


class ImportUserRow(EmailMixin):
    # Same rules as UserCreateIn: an import must not create what POST /users would refuse.
    email: str
    password: str = Field(min_length=8, max_length=256)
    role: Literal["user", "admin"] = "user"
    display_name: str | None = Field(default=None, max_length=200)


class ImportTemplateRow(Input):
    name: str = Field(min_length=1, max_length=200)
    content: str = Field(min_length=1, max_length=16000)
    description: str | None = Field(default=None, max_length=2000)


class ImportIn(Input):
    client_id: uuid.UUID | None = None
    users: list[dict[str, Any]] = Field(default_factory=list)
    templates: list[dict[str, Any]] = Field(default_factory=list)


# -- response shapes (documentation) --------------------------------------------------------------
class UserOut(_Output):
    id: uuid.UUID
    client_id: uuid.UUID | None
    email: str
    role: Literal["superadmin", "admin", "user"]
    display_name: str | None
    created_at: datetime


class ClientOut(_Output):
    id: uuid.UUID
    name: str
    slug: str
    n8n_webhook_url: str | None
    n8n_auth_header_name: str | None
    has_n8n_auth_header_value: bool
    has_signing_secret: bool
    allow_signup: bool
    allowed_origins: list[str]
    settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    signing_secret: str | None = Field(default=None, description="only in the POST answer and after rotation")


class TemplateOut(_Output):
    id: uuid.UUID
    client_id: uuid.UUID
    name: str
    content: str
    description: str | None
    variables: list[str]
    created_at: datetime
    updated_at: datetime


class ConversationOut(_Output):
    id: uuid.UUID
    client_id: uuid.UUID
    user_id: uuid.UUID
    title: str | None
    status: Literal["open", "closed"]
    mode: Literal["bot", "human"]
    template_id: uuid.UUID | None
    active_message_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class MessageOut(_Output):
    id: uuid.UUID
    conversation_id: uuid.UUID
    seq: int
    role: Literal["user", "assistant", "system"]
    content: str
    timestamp: datetime
    status: Literal["pending", "replied", "failed", "sent"]
    client_message_id: str | None
    in_reply_to: uuid.UUID | None
    metadata: dict[str, Any]


class ContextMessageOut(_Output):
    role: str
    content: str
    timestamp: datetime


class ContextOut(_Output):
    conversation_id: uuid.UUID
    context_window: int
    parameters: dict[str, Any]
    messages: list[MessageOut]
    created_at: datetime | None
    updated_at: datetime | None


class ErrorDetail(_Output):
    field: str
    message: str


class ErrorBody(_Output):
    code: str
    message: str
    details: list[ErrorDetail] | None = None


class ErrorOut(_Output):
    error: ErrorBody


ApiKeyScope = Literal["conversations:read", "messages:read", "messages:write", "context:read"]


class ApiKeyCreateIn(Input):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[ApiKeyScope] = Field(min_length=1, max_length=len(API_KEY_SCOPES))
    expires_at: datetime | None = None
    client_id: uuid.UUID | None = None


class AgentMessageIn(Input):
    role: Literal["assistant", "system"] = "assistant"
    content: str = Content
    client_message_id: str | None = Field(default=None, min_length=1, max_length=100)
    metadata: dict[str, Any] = Field(default_factory=dict)


class ApiKeyOut(_Output):
    id: uuid.UUID
    client_id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime
    key: str | None = Field(default=None, description="the full key: only in the POST answer")
