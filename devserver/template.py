"""Turns a SAM template into the plain model the servers need (functions, routes, schedules)."""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .intrinsics import Resolver, fake_id, load_yaml

log = logging.getLogger("devserver")

ACCOUNT_ID = "123456789012"
FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
_FN_IN_ARN = re.compile(r"function:([A-Za-z0-9_\-]+)")


@dataclass
class FunctionSpec:
    name: str
    handler: str
    code_dir: Path
    runtime: str = "python3.11"
    timeout: float = 3.0
    memory_mb: int = 128
    environment: dict[str, str] = field(default_factory=dict)
    layer_dirs: list[Path] = field(default_factory=list)
    max_retries: int = 2
    max_event_age: float = 21600.0
    on_failure: str | None = None  # function name of a Lambda OnFailure destination
    on_success: str | None = None
    arn: str = ""


@dataclass
class HttpRoute:
    api_id: str
    route_key: str  # "GET /items/{id}" or "$default"
    method: str  # "ANY" for any
    path: str
    function: str
    payload_version: str = "2.0"


@dataclass
class HttpApiSpec:
    logical_id: str
    api_id: str
    stage: str = "$default"
    throttle_burst: int | None = None
    throttle_rate: float | None = None
    cors: dict[str, Any] | None = None


@dataclass
class WsApiSpec:
    logical_id: str
    api_id: str
    selection_expression: str = "$request.body.action"
    stage: str = "$default"
    routes: dict[str, str] = field(default_factory=dict)  # route key -> function
    two_way: set[str] = field(default_factory=set)  # route keys with a RouteResponse


@dataclass
class ScheduleSpec:
    function: str
    name: str
    expression: str
    input: Any = None
    enabled: bool = True


@dataclass
class Model:
    functions: dict[str, FunctionSpec]
    http_apis: dict[str, HttpApiSpec]
    http_routes: list[HttpRoute]
    ws_apis: list[WsApiSpec]
    schedules: list[ScheduleSpec]
    region: str
    # Explicit FunctionName properties -> logical id: code invokes functions by their AWS name.
    aliases: dict[str, str] = field(default_factory=dict)


def _merge_globals(globals_: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    """SAM's Globals rules: maps merge (resource wins), lists concatenate, scalars override."""
    out = copy.deepcopy(globals_)
    for key, value in props.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not _is_intrinsic(value):
            out[key] = _merge_globals(out[key], value)
        elif isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = out[key] + value
        else:
            out[key] = value
    return out


def _is_intrinsic(v: Any) -> bool:
    return (isinstance(v, dict) and len(v) == 1 and next(iter(v)) in ("Ref", "Condition")) or (
        isinstance(v, dict) and len(v) == 1 and next(iter(v)).startswith("Fn::")
    )


def _as_number(v: Any, default: float) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def load_env_vars_file(path: str | None) -> dict[str, dict[str, str]]:
    if not path:
        return {}
    data = json.loads(Path(path).read_text())
    return {k: {kk: str(vv) for kk, vv in (v or {}).items()} for k, v in data.items()}


def load_model(
    template_path: str | os.PathLike[str],
    parameter_overrides: dict[str, str] | None = None,
    endpoints: dict[str, str] | None = None,
    stack_name: str = "local",
) -> Model:
    path = Path(template_path).resolve()
    base = path.parent
    tpl = load_yaml(path.read_text())
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    endpoints = endpoints or {}
    resources: dict[str, Any] = tpl.get("Resources") or {}
    globals_ = tpl.get("Globals") or {}

    # Apply Globals before resolving anything, as SAM's transform does.
    for res in resources.values():
        if not isinstance(res, dict):
            continue
        kind = res.get("Type")
        section = {"AWS::Serverless::Function": "Function", "AWS::Serverless::HttpApi": "HttpApi"}.get(str(kind))
        if section and isinstance(globals_.get(section), dict):
            res["Properties"] = _merge_globals(globals_[section], res.get("Properties") or {})

    params: dict[str, Any] = {}
    for name, spec in (tpl.get("Parameters") or {}).items():
        spec = spec or {}
        value: Any = (parameter_overrides or {}).get(name, spec.get("Default", ""))
        if str(spec.get("Type", "")).startswith(("CommaDelimitedList", "List<")) and isinstance(value, str):
            value = value.split(",") if value else []
        params[name] = value

    pseudo = {
        "AWS::Region": region,
        "AWS::AccountId": ACCOUNT_ID,
        "AWS::StackName": stack_name,
        "AWS::StackId": f"arn:aws:cloudformation:{region}:{ACCOUNT_ID}:stack/{stack_name}/local",
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::NotificationARNs": [],
    }

    def arn_of(logical: str, kind: str) -> str:
        if kind in FUNCTION_TYPES:
            return f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{logical}"
        if kind == "AWS::Serverless::LayerVersion" or kind == "AWS::Lambda::LayerVersion":
            return f"arn:aws:lambda:{region}:{ACCOUNT_ID}:layer:{logical}:1"
        service = kind.split("::")[1].lower() if kind.count("::") >= 2 else "local"
        return f"arn:aws:{service}:{region}:{ACCOUNT_ID}:{logical}"

    def ref_hook(logical: str, res: dict[str, Any]) -> Any:
        kind = str(res.get("Type", ""))
        if kind in FUNCTION_TYPES:
            return logical  # the local function name is the logical id
        if kind in ("AWS::Serverless::HttpApi", "AWS::ApiGatewayV2::Api", "AWS::Serverless::Api"):
            return fake_id("api", logical)
        if kind == "AWS::ApiGatewayV2::Stage":
            return (res.get("Properties") or {}).get("StageName", "$default")
        if kind.startswith("AWS::ApiGatewayV2::"):
            return fake_id(kind, logical, length=7)
        if "LayerVersion" in kind:
            return arn_of(logical, kind)
        return f"local-{logical}"

    def getatt_hook(logical: str, res: dict[str, Any], attr: str) -> Any:
        kind = str(res.get("Type", ""))
        if attr == "Arn":
            return arn_of(logical, kind)
        if attr == "ApiEndpoint" and kind in ("AWS::Serverless::HttpApi", "AWS::ApiGatewayV2::Api"):
            proto = str((res.get("Properties") or {}).get("ProtocolType", "HTTP")).upper()
            return endpoints.get("ws" if proto == "WEBSOCKET" else "http", f"http://local-{logical}")
        if attr == "ApiId":
            return fake_id("api", logical)
        return f"placeholder-{logical}-{attr}"

    resolver = Resolver(tpl, params, pseudo, ref_hook, getatt_hook)

    def active(res: Any) -> bool:
        return isinstance(res, dict) and (not res.get("Condition") or resolver.condition(res["Condition"]))

    layer_dirs: dict[str, Path] = {}
    for logical, res in resources.items():
        if active(res) and "LayerVersion" in str(res.get("Type")):
            props = res.get("Properties") or {}
            content = resolver.resolve(props.get("ContentUri") or props.get("Content"))
            if isinstance(content, str):
                layer_dirs[arn_of(logical, str(res["Type"]))] = (base / content).resolve()

    functions: dict[str, FunctionSpec] = {}
    aliases: dict[str, str] = {}
    http_apis: dict[str, HttpApiSpec] = {}
    http_routes: list[HttpRoute] = []
    schedules: list[ScheduleSpec] = []
    logical_by_api_id = {fake_id("api", lid): lid for lid in resources}

    def http_api(api_id: str, logical: str) -> HttpApiSpec:
        if api_id not in http_apis:
            spec = HttpApiSpec(logical_id=logical, api_id=api_id)
            res = resources.get(logical)
            props = resolver.resolve(res.get("Properties") or {}) if isinstance(res, dict) else {}
            if not isinstance(res, dict) and isinstance(globals_.get("HttpApi"), dict):
                props = resolver.resolve(globals_["HttpApi"])  # implicit API still gets Globals
            drs = props.get("DefaultRouteSettings") or {}
            if "ThrottlingBurstLimit" in drs or "ThrottlingRateLimit" in drs:
                spec.throttle_burst = int(_as_number(drs.get("ThrottlingBurstLimit"), 5000))
                spec.throttle_rate = _as_number(drs.get("ThrottlingRateLimit"), 10000)
            cors = props.get("CorsConfiguration")
            if cors is True or (isinstance(cors, str) and cors.lower() == "true"):
                cors = {"AllowOrigins": ["*"], "AllowMethods": ["*"], "AllowHeaders": ["*"]}
            spec.cors = cors if isinstance(cors, dict) else None
            spec.stage = str(props.get("StageName", "$default"))
            http_apis[api_id] = spec
        return http_apis[api_id]

    for logical, res in resources.items():
        if not active(res) or res.get("Type") not in FUNCTION_TYPES:
            continue
        props = resolver.resolve(res.get("Properties") or {})
        code = props.get("CodeUri") or (props.get("Code") if isinstance(props.get("Code"), str) else ".")
        if not isinstance(code, str):
            code = "."
        env = (props.get("Environment") or {}).get("Variables") or {}
        fn = FunctionSpec(
            name=logical,
            handler=str(props.get("Handler", "app.handler")),
            code_dir=(base / code).resolve(),
            runtime=str(props.get("Runtime", "python3.11")),
            timeout=_as_number(props.get("Timeout"), 3.0),
            memory_mb=int(_as_number(props.get("MemorySize"), 128)),
            environment={k: _env_str(v) for k, v in env.items()},
            arn=arn_of(logical, str(res["Type"])),
        )
        for layer in props.get("Layers") or []:
            d = layer_dirs.get(str(layer))
            if d is None:
                log.warning("template: %s: layer %s is not in this template; skipped", logical, layer)
                continue
            fn.layer_dirs.append(d)
        eic = props.get("EventInvokeConfig") or {}
        fn.max_retries = int(_as_number(eic.get("MaximumRetryAttempts"), 2))
        fn.max_event_age = _as_number(eic.get("MaximumEventAgeInSeconds"), 21600)
        dest = eic.get("DestinationConfig") or {}
        fn.on_failure = _lambda_destination(dest.get("OnFailure"))
        fn.on_success = _lambda_destination(dest.get("OnSuccess"))
        functions[logical] = fn
        physical = props.get("FunctionName")
        if isinstance(physical, str) and physical and physical != logical:
            aliases[physical] = logical

        for ev_name, ev in (props.get("Events") or {}).items():
            ev = ev or {}
            etype, eprops = ev.get("Type"), ev.get("Properties") or {}
            if etype == "HttpApi":
                api_ref = eprops.get("ApiId")
                api_id = str(api_ref) if api_ref else fake_id("api", "ServerlessHttpApi")
                api_logical = logical_by_api_id.get(api_id, "ServerlessHttpApi")
                http_api(api_id, api_logical)
                path_, method = eprops.get("Path"), str(eprops.get("Method", "ANY")).upper()
                if not path_ or path_ == "$default":
                    http_routes.append(HttpRoute(api_id, "$default", "ANY", "$default", logical))
                else:
                    method = "ANY" if method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD", "*") else method
                    key = f"{method} {path_}"
                    http_routes.append(
                        HttpRoute(
                            api_id,
                            key,
                            method,
                            str(path_),
                            logical,
                            str(eprops.get("PayloadFormatVersion", "2.0")),
                        )
                    )
            elif etype in ("Schedule", "ScheduleV2"):
                expr = eprops.get("Schedule") or eprops.get("ScheduleExpression")
                enabled = eprops.get("Enabled", True)
                state = str(eprops.get("State", "ENABLED")).upper()
                inp = eprops.get("Input")
                if isinstance(inp, str):
                    try:
                        inp = json.loads(inp)
                    except ValueError:
                        pass
                if expr:
                    schedules.append(
                        ScheduleSpec(
                            logical,
                            f"{logical}{ev_name}",
                            str(expr),
                            inp,
                            enabled not in (False, "false", "False") and state != "DISABLED",
                        )
                    )

    ws_apis, extra_http = _load_v2(resources, resolver, active, functions, http_api)
    http_routes.extend(extra_http)
    for api in http_apis.values():
        api.logical_id = logical_by_api_id.get(api.api_id, api.logical_id)
    return Model(functions, http_apis, http_routes, ws_apis, schedules, region, aliases)


def _env_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return "" if v is None else str(v)


def _lambda_destination(dest: Any) -> str | None:
    if not isinstance(dest, dict):
        return None
    if str(dest.get("Type", "Lambda")) != "Lambda":
        log.warning("template: destination type %s is not emulated; ignored", dest.get("Type"))
        return None
    m = _FN_IN_ARN.search(str(dest.get("Destination", "")))
    return m.group(1) if m else None


def _load_v2(
    resources: dict[str, Any],
    resolver: Resolver,
    active: Any,
    functions: dict[str, FunctionSpec],
    http_api: Any,
) -> tuple[list[WsApiSpec], list[HttpRoute]]:
    """Raw AWS::ApiGatewayV2::* resources: WebSocket APIs (and routes on HTTP ones)."""
    apis: dict[str, tuple[str, dict[str, Any]]] = {}
    integrations: dict[str, str] = {}  # integration id -> function
    routes: list[tuple[str, dict[str, Any]]] = []
    route_responses: list[dict[str, Any]] = []
    stages: list[dict[str, Any]] = []
    for logical, res in resources.items():
        if not active(res):
            continue
        kind = res.get("Type")
        if kind not in (
            "AWS::ApiGatewayV2::Api",
            "AWS::ApiGatewayV2::Integration",
            "AWS::ApiGatewayV2::Route",
            "AWS::ApiGatewayV2::RouteResponse",
            "AWS::ApiGatewayV2::Stage",
        ):
            continue
        props = resolver.resolve(res.get("Properties") or {})
        if kind == "AWS::ApiGatewayV2::Api":
            apis[fake_id("api", logical)] = (logical, props)
        elif kind == "AWS::ApiGatewayV2::Integration":
            m = _FN_IN_ARN.search(str(props.get("IntegrationUri", "")))
            if m and m.group(1) in functions:
                integrations[fake_id(str(kind), logical, length=7)] = m.group(1)
            else:
                log.warning("template: integration %s does not target a local function", logical)
        elif kind == "AWS::ApiGatewayV2::Route":
            props["_id"] = fake_id(str(kind), logical, length=7)
            routes.append((logical, props))
        elif kind == "AWS::ApiGatewayV2::RouteResponse":
            route_responses.append(props)
        else:
            stages.append(props)

    ws: dict[str, WsApiSpec] = {}
    for api_id, (logical, props) in apis.items():
        if str(props.get("ProtocolType", "")).upper() == "WEBSOCKET":
            ws[api_id] = WsApiSpec(logical, api_id, str(props.get("RouteSelectionExpression", "$request.body.action")))
    for st in stages:
        api = ws.get(str(st.get("ApiId")))
        if api and st.get("StageName"):
            api.stage = str(st["StageName"])
    two_way_route_ids = {str(rr.get("RouteId")) for rr in route_responses}
    extra_http: list[HttpRoute] = []
    for logical, props in routes:
        target = str(props.get("Target", ""))
        fn = integrations.get(target.rsplit("/", 1)[-1])
        if fn is None:
            log.warning("template: route %s has no local function target; skipped", logical)
            continue
        key, api_id = str(props.get("RouteKey", "$default")), str(props.get("ApiId"))
        if api_id in ws:
            ws[api_id].routes[key] = fn
            if props["_id"] in two_way_route_ids:
                ws[api_id].two_way.add(key)
        elif api_id in apis:
            http_api(api_id, apis[api_id][0])
            method, _, path_ = key.partition(" ")
            extra_http.append(HttpRoute(api_id, key, method.upper() if path_ else "ANY", path_ or "$default", fn))
    return list(ws.values()), extra_http
