"""API errors: one code per HTTP status, rendered as the documented error shape.

{"error": {"code": "validation_error", "message": "...", "details": [{"field": "...", "message": "..."}]}}
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    status = 400
    code = "bad_request"
    default_message = "bad request"

    def __init__(
        self,
        message: str | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details
        self.headers = headers or {}
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}


class InvalidJson(ApiError):
    status, code, default_message = 400, "invalid_json", "request body is not valid JSON"


class BadRequest(ApiError):
    status, code, default_message = 400, "bad_request", "bad request"


class Unauthorized(ApiError):
    status, code, default_message = 401, "unauthorized", "authentication required"


class Forbidden(ApiError):
    status, code, default_message = 403, "forbidden", "not allowed"


class NotFound(ApiError):
    status, code, default_message = 404, "not_found", "not found"


class Conflict(ApiError):
    status, code, default_message = 409, "conflict", "conflict"


class PayloadTooLarge(ApiError):
    status, code, default_message = 413, "payload_too_large", "request body too large"


class ValidationFailed(ApiError):
    status, code, default_message = 422, "validation_error", "invalid input"


class RateLimited(ApiError):
    status, code, default_message = 429, "rate_limited", "too many requests"

    def __init__(self, message: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)} if retry_after else None)
        self.retry_after = retry_after


class UpstreamError(ApiError):
    status, code, default_message = 502, "upstream_error", "upstream service failed"


class UpstreamTimeout(ApiError):
    status, code, default_message = 504, "upstream_timeout", "upstream service timed out"


def validation_details(exc: Any) -> list[dict[str, Any]]:
    """pydantic ValidationError -> [{"field": "a.b", "message": "..."}]."""
    details = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        message = str(err.get("msg", "invalid"))
        if err.get("type") == "extra_forbidden":
            message = "unknown field"
        details.append({"field": ".".join(loc) or "body", "message": message.removeprefix("Value error, ")})
    return details


def from_validation(exc: Any) -> ValidationFailed:
    details = validation_details(exc)
    first = details[0] if details else {"field": "body", "message": "invalid"}
    return ValidationFailed(f"{first['field']}: {first['message']}", details)
