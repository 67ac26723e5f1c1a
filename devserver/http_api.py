"""API Gateway HTTP API (payload format 2.0) in front of the local functions."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import mimetypes
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from aiohttp import web
from multidict import CIMultiDict

from .lambda_service import LambdaService
from .template import ACCOUNT_ID, HttpApiSpec, HttpRoute

MAX_BODY = 10 * 1024 * 1024
_TEXT_TYPES = re.compile(r"^(text/|application/(json|xml|javascript|x-www-form-urlencoded|graphql|ld\+json|[\w.+-]*\+(json|xml)))", re.I)


def _json_response(status: int, message: str | None, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=json.dumps({"message": message}).encode(), content_type="application/json", headers=headers)


@dataclass
class CompiledRoute:
    route: HttpRoute
    regex: re.Pattern[str] | None
    names: list[str]
    rank: tuple[int, ...]


def compile_route(route: HttpRoute) -> CompiledRoute:
    if route.route_key == "$default":
        return CompiledRoute(route, None, [], (9, 0, 0, 0))
    segments = [s for s in route.path.strip("/").split("/") if s]
    parts, names, literals, params, greedy = [], [], 0, 0, 0
    for seg in segments:
        m = re.fullmatch(r"\{([^}+]+)(\+?)\}", seg)
        if m and m.group(2):
            names.append(m.group(1))
            parts.append(f"(?P<p{len(names) - 1}>.+)")
            greedy = 1
        elif m:
            names.append(m.group(1))
            parts.append(f"(?P<p{len(names) - 1}>[^/]+)")
            params += 1
        else:
            parts.append(re.escape(seg))
            literals += 1
    regex = re.compile("^/" + "/".join(parts) + "/?$")
    # Most specific first: no greedy, fewer params, more literals, then a method beats ANY.
    rank = (greedy, params, -literals, 1 if route.method == "ANY" else 0)
    return CompiledRoute(route, regex, names, rank)


class TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class HttpApi:
    def __init__(
        self,
        lambdas: LambdaService,
        apis: dict[str, HttpApiSpec],
        routes: list[HttpRoute],
        integration_timeout: float = 30.0,
        static: list[tuple[Path, str]] | None = None,
    ) -> None:
        self.lambdas = lambdas
        self.apis = apis
        self.routes = sorted((compile_route(r) for r in routes), key=lambda c: c.rank)
        self.integration_timeout = integration_timeout
        # DefaultRouteSettings throttling applies to each route of the stage separately.
        self.buckets = {
            (r.api_id, r.route_key): TokenBucket(apis[r.api_id].throttle_rate or 0.0, apis[r.api_id].throttle_burst or 0)
            for r in routes
            if r.api_id in apis and apis[r.api_id].throttle_rate is not None
        }
        self.static = static or []
        self._any_cors = any(a.cors for a in apis.values())

    # -- routing
    def match(self, method: str, path: str) -> tuple[HttpRoute, dict[str, str]] | None:
        default = None
        for c in self.routes:
            if c.regex is None:
                default = default or c
                continue
            if c.route.method not in ("ANY", method):
                continue
            m = c.regex.match(path)
            if m:
                return c.route, {n: unquote(m.group(f"p{i}")) for i, n in enumerate(c.names)}
        return (default.route, {}) if default else None

    # -- event building
    def build_event(
        self, request: web.BaseRequest, route: HttpRoute, params: dict[str, str], body: bytes, request_id: str
    ) -> dict[str, Any]:
        headers: dict[str, str] = {}
        cookies: list[str] = []
        for k, v in request.headers.items():
            k = k.lower()
            if k == "cookie":
                cookies.extend(c.strip() for c in v.split(";") if c.strip())
                continue
            headers[k] = f"{headers[k]},{v}" if k in headers else v
        raw_qs = request.rel_url.raw_query_string
        query: dict[str, str] = {}
        for k, v in parse_qsl(raw_qs, keep_blank_values=True):
            query[k] = f"{query[k]},{v}" if k in query else v
        now = datetime.now(UTC)
        host = headers.get("host", "localhost")
        raw_path = request.rel_url.raw_path
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route.route_key,
            "rawPath": raw_path,
            "rawQueryString": raw_qs,
        }
        if cookies:
            event["cookies"] = cookies
        event["headers"] = headers
        if query:
            event["queryStringParameters"] = query
        event["requestContext"] = {
            "accountId": ACCOUNT_ID,
            "apiId": route.api_id,
            "domainName": host,
            "domainPrefix": host.split(".", 1)[0].split(":", 1)[0],
            "http": {
                "method": request.method,
                "path": raw_path,
                "protocol": f"HTTP/{request.version.major}.{request.version.minor}",
                "sourceIp": request.remote or "127.0.0.1",
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route.route_key,
            "stage": self.apis[route.api_id].stage if route.api_id in self.apis else "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        }
        if params:
            event["pathParameters"] = params
        if body:
            ctype = headers.get("content-type", "")
            if ctype and not _TEXT_TYPES.match(ctype):
                event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
            else:
                try:
                    event["body"], event["isBase64Encoded"] = body.decode("utf-8"), False
                except UnicodeDecodeError:
                    event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
        else:
            event["isBase64Encoded"] = False
        return event

    # -- response mapping (format 2.0 inference)
    @staticmethod
    def map_response(payload: bytes) -> web.Response:
        result = json.loads(payload) if payload else None
        if not (isinstance(result, dict) and "statusCode" in result):
            text = result if isinstance(result, str) else json.dumps(result)
            return web.Response(status=200, text=text, content_type="application/json")
        status = int(result["statusCode"])
        headers: CIMultiDict[str] = CIMultiDict()
        for k, vs in (result.get("multiValueHeaders") or {}).items():
            for v in vs if isinstance(vs, list) else [vs]:
                headers.add(k, str(v))
        for k, v in (result.get("headers") or {}).items():
            headers[k] = str(v)
        for c in result.get("cookies") or []:
            headers.add("Set-Cookie", str(c))
        if "content-type" not in headers:
            headers["Content-Type"] = "application/json"
        body = result.get("body")
        if body is None:
            raw = b""
        elif result.get("isBase64Encoded"):
            raw = base64.b64decode(body)
        else:
            raw = (body if isinstance(body, str) else json.dumps(body)).encode()
        return web.Response(status=status, body=raw, headers=headers)

    # -- CORS (only when the API declares CorsConfiguration)
    def _cors_headers(self, request: web.BaseRequest, api_id: str, preflight: bool) -> dict[str, str]:
        api = self.apis.get(api_id)
        cors = api.cors if api else None
        origin = request.headers.get("Origin")
        if not cors or not origin:
            return {}
        origins = [str(o) for o in cors.get("AllowOrigins") or []]
        if "*" in origins:
            allow = "*"
        elif origin in origins:
            allow = origin
        else:
            return {}
        out = {"Access-Control-Allow-Origin": allow}
        if cors.get("AllowCredentials"):
            out["Access-Control-Allow-Credentials"] = "true"
        if preflight:
            methods = [str(m) for m in cors.get("AllowMethods") or []]
            req_method = request.headers.get("Access-Control-Request-Method", "")
            out["Access-Control-Allow-Methods"] = req_method if "*" in methods and req_method else ",".join(methods)
            headers = [str(h) for h in cors.get("AllowHeaders") or []]
            req_headers = request.headers.get("Access-Control-Request-Headers", "")
            if headers:
                out["Access-Control-Allow-Headers"] = req_headers if "*" in headers and req_headers else ",".join(headers)
            if cors.get("MaxAge") is not None:
                out["Access-Control-Max-Age"] = str(cors["MaxAge"])
        elif cors.get("ExposeHeaders"):
            out["Access-Control-Expose-Headers"] = ",".join(str(h) for h in cors["ExposeHeaders"])
        return out

    # -- static files (future web UI)
    def _static(self, path: str) -> web.StreamResponse | None:
        for root, prefix in self.static:
            if path == prefix.rstrip("/"):
                raise web.HTTPMovedPermanently(prefix)
            if path.startswith(prefix):
                rel = unquote(path[len(prefix) :]) or "index.html"
                target = (root / rel).resolve()
                if target.is_dir():
                    target = target / "index.html"
                if root in target.parents and target.is_file():
                    ctype = mimetypes.guess_type(str(target))[0] or "application/octet-stream"
                    return web.FileResponse(target, headers={"Content-Type": ctype})
                return _json_response(404, "Not Found")
        return None

    # -- entry point
    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            return await self._handle(request)
        except web.HTTPException:
            raise
        except Exception:  # an emulator bug must look like an API Gateway 500, never kill the server
            logging.getLogger("devserver").exception("HTTP API request failed")
            return _json_response(500, "Internal Server Error")

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.rel_url.raw_path  # match raw segments: %2F inside a parameter stays in it
        if self.static:
            resp = self._static(request.rel_url.path)
            if resp is not None:
                return resp
        if request.method == "OPTIONS" and self._any_cors and "Access-Control-Request-Method" in request.headers:
            # API Gateway answers preflight itself when the API has a CorsConfiguration.
            pre = self.match(request.headers["Access-Control-Request-Method"], path)
            if pre is not None and (self.apis.get(pre[0].api_id) or HttpApiSpec("", "")).cors:
                return web.Response(status=204, headers=self._cors_headers(request, pre[0].api_id, True))
        matched = self.match(request.method, path)
        if matched is None:
            return _json_response(404, "Not Found")
        route, params = matched
        bucket = self.buckets.get((route.api_id, route.route_key))
        if bucket is not None and not bucket.take():
            return _json_response(429, "Too Many Requests")
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _json_response(413, "Request Entity Too Large", {"Connection": "close"})
        body = b""
        if request.body_exists:
            chunks, size = [], 0
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > MAX_BODY:
                    return _json_response(413, "Request Entity Too Large", {"Connection": "close"})
                chunks.append(chunk)
            body = b"".join(chunks)
        request_id = base64.b32encode(uuid.uuid4().bytes[:10]).decode().rstrip("=")[:14] + "="
        event = self.build_event(request, route, params, body, request_id)
        pool = self.lambdas.lookup(route.function)
        if pool is None:
            return _json_response(500, "Internal Server Error")
        task = asyncio.ensure_future(pool.invoke(json.dumps(event).encode()))
        try:
            result = await asyncio.wait_for(asyncio.shield(task), self.integration_timeout)
        except TimeoutError:
            return _json_response(503, "Service Unavailable", {"apigw-requestid": request_id})
        if not result.ok:
            resp = _json_response(500, "Internal Server Error")
        else:
            try:
                resp = self.map_response(result.payload)
            except (ValueError, TypeError, KeyError, AttributeError):
                resp = _json_response(500, "Internal Server Error")
        resp.headers["apigw-requestid"] = request_id
        for k, v in self._cors_headers(request, route.api_id, False).items():
            resp.headers[k] = v
        return resp
