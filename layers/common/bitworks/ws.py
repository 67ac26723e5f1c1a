"""WebSocket handler plumbing shared by the WebSocket route Lambdas (the twin of bitworks.api):
event parsing, connection -> Principal (refreshing last_seen_at), error events, route-response
shaping and exception mapping. Handlers stay thin:

    app = WsApp()

    @app.message
    def ping(req: WsRequest) -> dict:
        return {"type": "pong"}

    handler = app.handler

Route responses (sendMessage, subscribe, ping, $default have a RouteResponse): the returned dict
is sent back to the caller's socket; None sends nothing. Errors become
{"type": "error", "action", "client_message_id", "error": {"code", "message"}} on that socket.
$connect answers only a status code: 200 accepts the handshake, 401 rejects it.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from sqlalchemy.orm import Session

from bitworks import errors
from bitworks.access import Principal
from bitworks.jsonutil import dumps

if TYPE_CHECKING:
    from bitworks.bodies import Spec

# Same service as bitworks.api's logger (Powertools shares it), without importing the HTTP resolver.
logger = Logger(service="bitworks")

# Echoed identifiers are the client's own; a longer string is not an identifier we issued or accept.
MAX_ECHO = 200
_UNSET: Any = object()


class InternalError(errors.ApiError):
    status, code, default_message = 500, "internal_error", "internal error"


class WsRequest:
    """One WebSocket invocation: the event, a lazily opened session, the connection's principal."""

    def __init__(self, event: dict[str, Any]) -> None:
        self.event = event if isinstance(event, dict) else {}
        context = self.event.get("requestContext") or {}
        self.connection_id: str = str(context.get("connectionId") or "")
        self.route_key: str | None = context.get("routeKey")
        self._session: Session | None = None
        self._principal: Principal | None = None
        self._data: Any = _UNSET
        self._data_error: errors.ApiError | None = None

    # -- database -----------------------------------------------------------------------------
    @property
    def session(self) -> Session:
        if self._session is None:
            from bitworks.db import new_session

            self._session = new_session()
        return self._session

    def commit(self) -> None:
        """Commit what is done so far (the last_seen_at refresh must survive a failing handler)."""
        if self._session is not None:
            self._session.commit()

    def finish(self, ok: bool) -> None:
        """Commit (or roll back) and close; deferred effects (bitworks.outbox) run after a commit."""
        from bitworks.db import finish

        session, self._session = self._session, None
        if session is not None:
            finish(session, ok)

    # -- identity -----------------------------------------------------------------------------
    @property
    def principal(self) -> Principal:
        """The connection's user; looking it up refreshes last_seen_at (unknown connection: 401)."""
        if self._principal is None:
            from bitworks.services.connections import principal_for_connection

            self._principal = principal_for_connection(self.session, self.connection_id)
        return self._principal

    # -- input --------------------------------------------------------------------------------
    def query(self, name: str) -> str | None:
        value = (self.event.get("queryStringParameters") or {}).get(name)
        return value if isinstance(value, str) else None

    def raw_body(self) -> str:
        body = self.event.get("body")
        if body is None:
            return ""
        if self.event.get("isBase64Encoded"):
            try:
                return base64.b64decode(body, validate=False).decode("utf-8")
            except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
                raise errors.InvalidJson("message is not valid JSON") from None
        return body if isinstance(body, str) else bytes(body).decode("utf-8", "replace")

    def _parse(self) -> None:
        if self._data is not _UNSET or self._data_error is not None:
            return
        try:
            raw = self.raw_body()
            if not raw.strip():
                raise errors.InvalidJson("message must be a JSON object")
            try:
                data = json.loads(raw)
            except (ValueError, RecursionError):  # RecursionError: hostile nesting ([[[[...)
                raise errors.InvalidJson("message is not valid JSON") from None
            if not isinstance(data, dict):
                raise errors.BadRequest("message must be a JSON object")
            self._data = data
        except errors.ApiError as exc:
            self._data_error = exc

    @property
    def data(self) -> dict[str, Any]:
        """The message as a JSON object; raises invalid_json / bad_request otherwise."""
        self._parse()
        if self._data_error is not None:
            raise self._data_error
        return self._data

    def _echo(self, name: str) -> str | None:
        self._parse()
        if self._data_error is not None:
            return None
        value = self._data.get(name)
        return value if isinstance(value, str) and len(value) <= MAX_ECHO else None

    @property
    def action(self) -> str | None:
        return self._echo("action")

    @property
    def client_message_id(self) -> str | None:
        return self._echo("client_message_id")

    def uuid_field(self, name: str) -> uuid.UUID:
        value = self.data.get(name)
        if value is None:
            raise errors.ValidationFailed(f"{name}: required", [{"field": name, "message": "required"}])
        try:
            if isinstance(value, str):
                return uuid.UUID(value)
        except ValueError:
            pass
        raise errors.ValidationFailed(f"{name}: must be a UUID", [{"field": name, "message": "must be a UUID"}])

    def model(self, spec: Spec, *, exclude: tuple[str, ...] = ("action",)) -> Any:
        """Validate the message's fields (minus routing fields) strictly, like an HTTP body."""
        from pydantic_core import ValidationError

        fields = {k: v for k, v in self.data.items() if k not in exclude}
        try:
            return spec.validate_python(fields)
        except ValidationError as exc:
            raise errors.from_validation(exc) from None


# -- shaping -------------------------------------------------------------------------------------
def error_event(action: str | None, client_message_id: str | None, exc: errors.ApiError) -> dict[str, Any]:
    error = exc.body()["error"]
    retry_after = getattr(exc, "retry_after", None)
    if retry_after:
        error["retry_after"] = retry_after
    return {"type": "error", "action": action, "client_message_id": client_message_id, "error": error}


def route_response(payload: dict[str, Any] | None) -> dict[str, Any]:
    """What API Gateway sends back on the caller's socket; no body sends nothing."""
    if payload is None:
        return {"statusCode": 200}
    return {"statusCode": 200, "body": dumps(payload)}


# -- the app -------------------------------------------------------------------------------------
Handler = Callable[[WsRequest], Any]


class WsApp:
    """One WebSocket route per Lambda: register its function with connect, disconnect or message."""

    def __init__(self) -> None:
        self._run: Callable[[WsRequest], dict[str, Any]] | None = None

    def connect(self, func: Handler) -> Handler:
        """$connect: the function raises an ApiError to reject the handshake with its status."""
        self._run = lambda req: self._lifecycle(func, req)
        return func

    def disconnect(self, func: Handler) -> Handler:
        self._run = lambda req: self._lifecycle(func, req)
        return func

    def message(self, func: Handler) -> Handler:
        """A message route: the caller's connection must be known; every message refreshes it."""
        self._run = lambda req: self._message(func, req)
        return func

    @staticmethod
    def _lifecycle(func: Handler, req: WsRequest) -> dict[str, Any]:
        try:
            func(req)
            req.finish(ok=True)
            return {"statusCode": 200}
        except errors.ApiError as exc:
            req.finish(ok=False)
            return {"statusCode": exc.status}
        except Exception:  # a handshake answers a status, never a stack trace
            req.finish(ok=False)
            # Never log the event: $connect carries the ticket in its query string.
            logger.exception("unhandled error")
            return {"statusCode": 500}

    @staticmethod
    def _message(func: Handler, req: WsRequest) -> dict[str, Any]:
        try:
            _ = req.principal
            req.commit()  # keep the last_seen_at refresh even when the handler fails below
            result = func(req)
            req.finish(ok=True)
            return route_response(result)
        except errors.ApiError as exc:
            req.finish(ok=False)
            if exc.status >= 500:
                logger.warning("upstream failure", extra={"code": exc.code})
            return route_response(error_event(req.action, req.client_message_id, exc))
        except Exception:  # the socket gets an error event, never a crash
            req.finish(ok=False)
            logger.exception("unhandled error")
            return route_response(error_event(req.action, req.client_message_id, InternalError()))

    def handler(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        if self._run is None:
            raise RuntimeError("no WebSocket route registered")
        req = WsRequest(event)
        request_id = (req.event.get("requestContext") or {}).get("requestId")
        logger.append_keys(correlation_id=request_id, route=req.route_key)
        try:
            return self._run(req)
        finally:
            logger.remove_keys(["correlation_id", "route"])
