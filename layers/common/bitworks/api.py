"""HTTP handler plumbing shared by every route Lambda: routing (Powertools resolver), auth,
body/query parsing, CORS, security headers, error mapping and JSON encoding. Handlers stay thin:

    app = HttpApp()

    @app.route("POST", "/conversations", status=201, body=ConversationCreate, response=ConversationOut)
    def create_conversation(req: Request) -> dict:
        return conversations.create(req.session, req.principal, req.body)

    handler = app.handler
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from sqlalchemy.orm import Session

from bitworks import errors
from bitworks.access import Principal, TokenClaims, authenticate_bearer, bearer_claims, check_token_user
from bitworks.jsonutil import dumps

if TYPE_CHECKING:
    from pydantic import BaseModel

    from bitworks.bodies import Spec

logger = Logger(service="bitworks")

MAX_BODY_BYTES = 1024 * 1024
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
CORS_ALLOW_HEADERS = "Authorization,Content-Type,X-Requested-With"
CORS_ALLOW_METHODS = "GET,POST,PUT,DELETE,OPTIONS"


@dataclass
class Reply:
    """Return this instead of a dict to choose the status (e.g. 200 for an idempotent repeat)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RouteSpec:
    """What the OpenAPI generator reads."""

    method: str
    path: str
    status: int
    auth: bool
    summary: str
    body: Spec | None
    response: type[BaseModel] | str | None  # a class, or its name in bitworks.schemas (docs only)
    query: tuple[str, ...]
    errors: tuple[int, ...]
    name: str
    scope: str | None = None

    @property
    def response_model(self) -> Any:
        """The response class (for the OpenAPI document), loaded only when asked for."""
        if isinstance(self.response, str):
            from bitworks import schemas

            return getattr(schemas, self.response)
        return self.response


class Request:
    """One invocation: the event, lazily opened DB session, lazily authenticated principal."""

    def __init__(self, event: Any, body_model: Spec | None, readonly: bool = False) -> None:
        self.event = event
        self._body_model = body_model
        self._readonly = readonly
        self._session: Session | None = None
        self._principal: Principal | None = None
        self._claims: TokenClaims | None = None
        self._body: Any = None

    # -- database -----------------------------------------------------------------------------
    @property
    def session(self) -> Session:
        if self._session is None:
            from bitworks.db import new_session

            self._session = new_session(readonly=self._readonly)
        return self._session

    def finish(self, ok: bool) -> None:
        """Commit (or roll back) and close; deferred effects (bitworks.outbox) run after a commit."""
        from bitworks.db import finish

        session, self._session = self._session, None
        if session is not None:
            finish(session, ok)

    # -- identity -----------------------------------------------------------------------------
    @property
    def principal(self) -> Principal:
        if self._principal is None:
            if self._claims is not None:
                self._principal = self._claims.principal or check_token_user(self.session, self._claims)
            else:
                self._principal = authenticate_bearer(self.session, self.header("authorization"))
        return self._principal

    def bearer(self) -> Principal | TokenClaims:
        """On a route declared auth="in_service": the verified token, whose user check the service
        folds into its first statement (access.principal_for); an API key's principal as usual."""
        if self._claims is not None and self._claims.principal is None:
            return self._claims
        return self.principal

    def header(self, name: str) -> str | None:
        headers = self.event.get("headers") or {}
        value = headers.get(name.lower())
        return value if isinstance(value, str) else None

    @property
    def source_ip(self) -> str:
        return str(((self.event.get("requestContext") or {}).get("http") or {}).get("sourceIp") or "unknown")

    @property
    def origin(self) -> str | None:
        return self.header("origin")

    # -- input --------------------------------------------------------------------------------
    def raw_body(self) -> bytes:
        body = self.event.get("body")
        if body is None:
            return b""
        if self.event.get("isBase64Encoded"):
            try:
                raw = base64.b64decode(body, validate=False)
            except (ValueError, TypeError):
                raise errors.InvalidJson() from None
        else:
            raw = body.encode() if isinstance(body, str) else bytes(body)
        if len(raw) > MAX_BODY_BYTES:
            raise errors.PayloadTooLarge(f"request body exceeds {MAX_BODY_BYTES} bytes")
        return raw

    @property
    def body(self) -> Any:
        if self._body is None and self._body_model is not None:
            self._body = parse_model(self._body_model, self.raw_body())
        return self._body

    def path_uuid(self, name: str) -> uuid.UUID:
        value = (self.event.get("pathParameters") or {}).get(name)
        return parse_uuid(value, name)

    def query(self, name: str) -> str | None:
        value = (self.event.get("queryStringParameters") or {}).get(name)
        return value if isinstance(value, str) else None

    def query_int(self, name: str, default: int | None, low: int, high: int) -> int | None:
        value = self.query(name)
        if value is None or value == "":
            return default
        try:
            number = int(value)
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            raise errors.ValidationFailed(
                f"{name}: must be an integer from {low} to {high}",
                [{"field": name, "message": f"must be an integer from {low} to {high}"}],
            )
        return number

    def query_uuid(self, name: str) -> uuid.UUID | None:
        value = self.query(name)
        return None if value is None or value == "" else parse_uuid(value, name)

    @property
    def limit(self) -> int:
        return int(self.query_int("limit", 50, 1, 200) or 50)


def parse_uuid(value: Any, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        raise errors.ValidationFailed(f"{name}: must be a UUID", [{"field": name, "message": "must be a UUID"}]) from None


def parse_model(spec: Spec, raw: bytes) -> Any:
    if not raw.strip():
        raise errors.InvalidJson("request body must be a JSON object")
    from pydantic_core import ValidationError

    try:
        return spec.validate_json(raw)
    except ValidationError as exc:
        kinds = {e["type"] for e in exc.errors()}
        if "json_invalid" in kinds:
            raise errors.InvalidJson() from None
        raise errors.from_validation(exc) from None


# -- CORS ----------------------------------------------------------------------------------------
_origin_cache: dict[str, tuple[float, bool]] = {}


def origin_allowed(origin: str, client_id: uuid.UUID | None) -> bool:
    """An origin is allowed when the caller's client lists it (any client, for public routes)."""
    key = f"{client_id}|{origin}"
    now = time.monotonic()
    cached = _origin_cache.get(key)
    if cached and now - cached[0] < 30:
        return cached[1]
    from sqlalchemy import text

    from bitworks.db import get_engine

    sql = "SELECT 1 FROM clients WHERE allowed_origins @> CAST(:origin AS jsonb)"
    params: dict[str, Any] = {"origin": json.dumps([origin])}
    if client_id is not None:
        sql += " AND id = :client_id"
        params["client_id"] = client_id
    from bitworks.db import autocommit_reads

    with get_engine().connect() as conn:
        autocommit_reads(conn)
        allowed = conn.execute(text(sql + " LIMIT 1"), params).first() is not None
    if len(_origin_cache) > 1000:
        _origin_cache.clear()
    _origin_cache[key] = (now, allowed)
    return allowed


def cors_headers(origin: str | None, client_id: uuid.UUID | None) -> dict[str, str]:
    if not origin:
        return {}
    try:
        allowed = origin_allowed(origin, client_id)
    except Exception:
        logger.warning("origin check failed", exc_info=True)
        allowed = False
    if not allowed:
        return {"Vary": "Origin"}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "false",
        "Access-Control-Expose-Headers": "Retry-After",
        "Vary": "Origin",
    }


def preflight_headers(origin: str | None) -> dict[str, str]:
    headers = cors_headers(origin, None)
    if "Access-Control-Allow-Origin" in headers:
        headers.update(
            {
                "Access-Control-Allow-Methods": CORS_ALLOW_METHODS,
                "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
                "Access-Control-Max-Age": "600",
            }
        )
    return headers


# -- the app ---------------------------------------------------------------------------------------
def _response(status: int, body: Any, headers: dict[str, str]) -> Response:
    merged = {**SECURITY_HEADERS, **headers}
    if status == 204 or body is None:
        return Response(status_code=status, body="", headers=merged)
    return Response(status_code=status, content_type="application/json", body=dumps(body), headers=merged)


def _stale_token_first(req: Request, error: errors.ApiError) -> errors.ApiError:
    """A route declared auth="in_service" failed before its service checked the token's user (a
    malformed body, a bad path): a stale token answers 401 there too, as on every other route.
    The user is looked up in a fresh transaction, on this error path only."""
    claims = req._claims
    if claims is None or claims.principal is not None or error.status == 401:
        return error
    try:
        req.principal  # noqa: B018 -- the token's user check, raising 401 for a stale token
    except errors.ApiError as stale:
        return stale
    except Exception:  # the database failing now does not hide the caller's own mistake
        logger.warning("token check after an error failed", exc_info=True)
    finally:
        req.finish(ok=False)
    return error


def _database_unavailable(exc: BaseException) -> bool:
    from sqlalchemy import exc as sa_exc

    return isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)) or (
        isinstance(exc, sa_exc.DBAPIError) and bool(exc.connection_invalidated)
    )


class HttpApp:
    def __init__(self) -> None:
        self.resolver = APIGatewayHttpResolver()
        # Powertools keeps the current event on its BaseRouter class: one Lambda invocation per process
        # makes that fine, but threads (tests, a threaded local server) would read each other's events.
        self._local = threading.local()
        self.routes: list[RouteSpec] = []
        self.resolver.not_found(self._not_found)

    def _not_found(self, _exc: Exception) -> Response:
        return _response(404, errors.NotFound("route not found").body(), {})

    def route(
        self,
        method: str,
        path: str,
        *,
        status: int = 200,
        auth: bool | Literal["in_service"] = True,
        body: Spec | None = None,
        response: type[BaseModel] | str | None = None,
        query: tuple[str, ...] = (),
        errors_: tuple[int, ...] = (),
        summary: str = "",
        scope: str | None = None,
        readonly: bool | None = None,
    ) -> Callable[[Callable[[Request], Any]], Callable[[Request], Any]]:
        """`auth="in_service"`: the token is verified here, its user checked by the service (one
        round trip saved on the hot path; see Request.bearer).
        `scope`: the API-key scope that admits n8n keys to this route; without one, keys get 403.
        `readonly` (default: GET routes): the request's reads run without BEGIN/COMMIT."""
        reads_only = method.upper() == "GET" if readonly is None else readonly

        def decorator(func: Callable[[Request], Any]) -> Callable[[Request], Any]:
            self.routes.append(
                RouteSpec(
                    method,
                    path,
                    status,
                    bool(auth),
                    summary or (func.__doc__ or "").strip().split("\n")[0],
                    body,
                    response,
                    query,
                    errors_,
                    func.__name__,
                    scope,
                )
            )
            rule = path.replace("{", "<").replace("}", ">")

            def endpoint(**_params: Any) -> Response:
                return self._run(func, status, auth, body, scope, reads_only)

            self.resolver.route(rule, method.upper())(endpoint)
            return func

        return decorator

    def _run(
        self,
        func: Callable[[Request], Any],
        status: int,
        auth: bool | Literal["in_service"],
        body_model: Spec | None,
        scope: str | None,
        readonly: bool = False,
    ) -> Response:
        event = self._local.event
        req = Request(event, body_model, readonly)
        client_id: uuid.UUID | None = None
        try:
            claims = bearer_claims(req.header("authorization")) if auth == "in_service" else None
            if claims is not None:
                req._claims = claims
                client_id = uuid.UUID(str(claims.client_id)) if claims.client_id else None
            elif auth:
                principal = req.principal
                client_id = principal.client_id
                if principal.is_api_key:
                    # The one place that decides where n8n's API keys may go.
                    if scope is None:
                        raise errors.Forbidden("API keys may not use this route")
                    if scope not in principal.scopes:
                        raise errors.Forbidden(f"this API key lacks the scope {scope}")
            result = func(req)
            if claims is not None and claims.principal is None:
                raise RuntimeError(f"{func.__name__}: auth='in_service' but the token's user was never checked")
            req.finish(ok=True)
            if isinstance(result, Reply):
                return _response(result.status, result.body, {**cors_headers(req.origin, client_id), **result.headers})
            return _response(204 if result is None else status, result, cors_headers(req.origin, client_id))
        except errors.ApiError as caught:
            req.finish(ok=False)
            exc = _stale_token_first(req, caught)
            if exc.status >= 500:
                logger.warning("upstream failure", extra={"code": exc.code})
            return _response(exc.status, exc.body(), {**cors_headers(req.origin, client_id), **exc.headers})
        except Exception as exc:
            try:
                req.finish(ok=False)
            except Exception:  # the rollback of a dead connection fails too
                logger.warning("rollback failed", exc_info=True)
            if _database_unavailable(exc):
                # Not the caller's fault and worth retrying (a failover, a restart): 503, not 500.
                logger.warning("database unavailable", extra={"error": type(exc).__name__})
                body = {"error": {"code": "unavailable", "message": "the service is briefly unavailable, retry shortly"}}
                return _response(503, body, {"Retry-After": "1"})
            logger.exception("unhandled error")
            body = {"error": {"code": "internal_error", "message": "internal error"}}
            return _response(500, body, cors_headers(req.origin, client_id))

    def handler(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        request_id = (event.get("requestContext") or {}).get("requestId")
        logger.append_keys(correlation_id=request_id, route=event.get("routeKey"))
        self._local.event = event
        try:
            return self.resolver.resolve(event, context)
        finally:
            logger.remove_keys(["correlation_id", "route"])
