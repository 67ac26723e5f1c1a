"""Static checks of template.yaml: handlers, routes, least privilege, layers, secrets, migrations."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.infra._support import LAYER, ROOT, architecture_routes, functions, required_permissions, template

MIGRATIONS = LAYER / "bitworks" / "migrations" / "versions"


def _http_events(props: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (str(e["Properties"]["Method"]).upper(), str(e["Properties"]["Path"]))
        for e in (props.get("Events") or {}).values()
        if e.get("Type") == "HttpApi"
    ]


def _sub_text(value: Any) -> str:
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else str(sub[0])
    return json.dumps(value)


def granted_permissions(name: str, props: dict[str, Any]) -> set[str]:
    granted: set[str] = set()
    for policy in props.get("Policies") or []:
        if policy == {"Ref": "AppSecretsReadPolicy"}:
            granted.add("secrets")
            continue
        if isinstance(policy, dict) and "LambdaInvokePolicy" in policy:
            target = policy["LambdaInvokePolicy"]["FunctionName"]
            granted.add("invoke:import" if target == {"Ref": "ImportWorkerFunction"} else f"invoke:?{target}")
            continue
        statements = policy.get("Statement") if isinstance(policy, dict) else None
        assert statements, f"{name}: unexpected policy {policy!r}"
        for st in statements:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            for action in actions:
                for resource in resources:
                    text = _sub_text(resource)
                    if action == "execute-api:ManageConnections":
                        m = re.search(r"/\$\{Stage\}/([A-Z*]+)/@connections/\*$", text)
                        assert m, f"{name}: ManageConnections on {text}"
                        granted |= {"ws:POST", "ws:DELETE"} if m.group(1) == "*" else {f"ws:{m.group(1)}"}
                    elif action == "lambda:InvokeFunction":
                        if text.endswith(":function:${AWS::StackName}-dispatch"):
                            granted.add("invoke:dispatch")
                        elif "ImportWorkerFunction" in text:
                            granted.add("invoke:import")
                        else:
                            granted.add(f"invoke:?{text}")
                    else:
                        granted.add(f"{action}:{text}")
    return granted


def test_every_handler_module_exists() -> None:
    for name, res in functions().items():
        props = res["Properties"]
        module = props["Handler"].rsplit(".", 1)[0]
        path = ROOT / props["CodeUri"] / (module.replace(".", "/") + ".py")
        assert path.exists(), f"{name}: {path} missing"


def test_every_handler_module_imports() -> None:
    by_dir: dict[str, list[str]] = {}
    for res in functions().values():
        props = res["Properties"]
        by_dir.setdefault(props["CodeUri"], []).append(props["Handler"])
    env = {
        "PATH": os.environ.get("PATH", ""),
        "STAGE": "test",
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "JWT_SECRET": "x" * 48,
        "PASSWORD_SCRYPT_N": "16",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "WEBSOCKET_API_ID": "abc",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    for code_uri, handlers in by_dir.items():
        code = (
            "import importlib, sys\n"
            f"sys.path[:0] = [{str(ROOT / code_uri)!r}, {str(LAYER)!r}]\n"
            f"for h in {handlers!r}:\n"
            "    mod, _, attr = h.rpartition('.')\n"
            "    assert callable(getattr(importlib.import_module(mod), attr)), h\n"
        )
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, cwd="/")
        assert run.returncode == 0, f"{code_uri}: {run.stderr[-2000:]}"


def test_every_documented_route_exists_exactly_once() -> None:
    declared = Counter(route for res in functions().values() for route in _http_events(res["Properties"]))
    documented = architecture_routes()
    assert len(documented) >= 38
    for route in documented:
        assert declared[route] == 1, f"{route}: declared {declared[route]} times"
    assert declared[("OPTIONS", "/{proxy+}")] == 1
    assert all(n == 1 for n in declared.values()), [r for r, n in declared.items() if n > 1]


def test_least_privilege_matches_the_code() -> None:
    problems = []
    for name, res in functions().items():
        props = res["Properties"]
        if name == "MigrateFunction":
            continue
        code_dir = ROOT / props["CodeUri"]
        needed = required_permissions(code_dir, props["Handler"].rsplit(".", 1)[0]) | {"secrets"}
        granted = granted_permissions(name, props)
        if needed != granted:
            problems.append(f"{name}: missing {sorted(needed - granted)}, extra {sorted(granted - needed)}")
        env = (props.get("Environment") or {}).get("Variables") or {}
        if "invoke:dispatch" in needed:
            assert env.get("DISPATCH_FUNCTION_NAME") == {"Fn::Sub": "${AWS::StackName}-dispatch"}, name
        if "invoke:import" in needed:
            assert env.get("IMPORT_FUNCTION_NAME") == {"Ref": "ImportWorkerFunction"}, name
    assert not problems, "\n".join(problems)


def test_no_wildcard_actions_and_narrow_resources() -> None:
    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if "Action" in node and ("Effect" in node):
                actions = node["Action"] if isinstance(node["Action"], list) else [node["Action"]]
                assert all("*" not in str(a) for a in actions), f"{where}: {actions}"
                resources = node.get("Resource")
                assert resources not in ("*", ["*"]), f"{where}: Resource *"
            for k, v in node.items():
                walk(v, f"{where}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")

    walk(template()["Resources"], "Resources")


def test_secret_reads_are_limited_to_the_two_secrets() -> None:
    policy = template()["Resources"]["AppSecretsReadPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert policy == [
        {
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": [
                {"Ref": "JwtSecret"},
                {"Fn::If": ["UseExistingDatabase", {"Ref": "ExistingDbSecretArn"}, {"Ref": "DbSecret"}]},
            ],
        }
    ]


def test_layers_and_network_on_every_function() -> None:
    glob = template()["Globals"]["Function"]
    assert glob["Layers"][0] == {"Ref": "CommonLayer"}
    assert "AWS-Parameters-and-Secrets-Lambda-Extension" in json.dumps(glob["Layers"][1])
    assert set(glob["VpcConfig"]) == {"SubnetIds", "SecurityGroupIds"}
    assert glob["Runtime"] == "python3.11" and glob["Tracing"] == "Active"
    for name, res in functions().items():
        props = res["Properties"]
        assert "Layers" not in props and "VpcConfig" not in props, f"{name} overrides the Globals"


def test_every_function_but_the_migration_waits_for_it() -> None:
    for name, res in functions().items():
        if name == "MigrateFunction":
            assert "DatabaseMigration" not in json.dumps(res.get("DependsOn"))
        else:
            assert res.get("DependsOn") == "DatabaseMigration", name


def test_functions_come_before_websocket_resources() -> None:
    types = [r["Type"] for r in template()["Resources"].values()]
    first_v2 = next(i for i, t in enumerate(types) if t.startswith("AWS::ApiGatewayV2::"))
    assert all(i < first_v2 for i, t in enumerate(types) if t == "AWS::Serverless::Function")


def test_no_secret_values_in_the_template() -> None:
    env = template()["Globals"]["Function"]["Environment"]["Variables"]
    assert env["JWT_SECRET"] == "" and env["DATABASE_URL"] == ""
    text = (ROOT / "template.yaml").read_text()
    for pattern in (r"(?i)password\s*:\s*['\"]?[A-Za-z0-9]", r"AKIA[0-9A-Z]{16}", r"postgres(ql)?://[^\"'\s]*:[^\"'\s]*@"):
        hits = [m.group(0) for m in re.finditer(pattern, text) if "resolve:secretsmanager" not in m.group(0)]
        assert not hits, hits
    for name, res in functions().items():
        variables = ((res["Properties"].get("Environment") or {}).get("Variables")) or {}
        for key, value in variables.items():
            if re.search(r"SECRET|PASSWORD|TOKEN|KEY", key) and not key.endswith("_ARN"):
                assert value in ("", None), f"{name}: {key}"
    cluster = template()["Resources"]["DbCluster"]["Properties"]
    assert "{{resolve:secretsmanager:" in cluster["MasterUserPassword"]["Fn::Sub"]


def test_migrations_head_literal_matches_alembic() -> None:
    revisions: dict[str, str | None] = {}
    for path in MIGRATIONS.glob("*.py"):
        text = path.read_text()
        rev = re.search(r"^revision\s*(?::\s*str\s*)?=\s*['\"]([^'\"]+)['\"]", text, re.M)
        down = re.search(r"^down_revision\s*(?::[^=]*)?=\s*(None|['\"]([^'\"]+)['\"])", text, re.M)
        assert rev and down, path
        revisions[rev.group(1)] = down.group(2)
    heads = set(revisions) - {d for d in revisions.values() if d}
    assert len(heads) == 1, f"Alembic heads: {heads}"
    literal = template()["Resources"]["DatabaseMigration"]["Properties"]["MigrationsHead"]
    assert literal == heads.pop(), "update DatabaseMigration.MigrationsHead in template.yaml to the new head"


def test_dispatch_async_config_and_alarms() -> None:
    res = template()["Resources"]
    eic = res["DispatchFunction"]["Properties"]["EventInvokeConfig"]
    assert eic["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["TurnFailureFunction", "Arn"]}
    alarms = {k: v["Properties"] for k, v in res.items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    watched = {(p["MetricName"], p["Dimensions"][0]["Value"]["Ref"]) for p in alarms.values()}
    assert {("Invocations", "TurnFailureFunction"), ("Errors", "DispatchFunction")} <= watched


def test_log_groups_with_retention_for_every_function() -> None:
    res = template()["Resources"]
    names = {json.dumps(v["Properties"]["LogGroupName"]) for v in res.values() if v["Type"] == "AWS::Logs::LogGroup"}
    assert all("RetentionInDays" in v["Properties"] for v in res.values() if v["Type"] == "AWS::Logs::LogGroup")
    for name in functions():
        if name != "MigrateFunction":
            assert json.dumps({"Fn::Sub": f"/aws/lambda/${{{name}}}"}) in names, name


def test_http_api_has_access_logs_throttling_and_no_static_cors() -> None:
    props = template()["Resources"]["HttpApi"]["Properties"]
    assert "CorsConfiguration" not in props
    assert props["AccessLogSettings"]["DestinationArn"] == {"Fn::GetAtt": ["HttpApiAccessLogs", "Arn"]}
    assert props["DefaultRouteSettings"]["ThrottlingRateLimit"] > 0
    stage = template()["Resources"]["WebSocketStage"]["Properties"]
    assert "AccessLogSettings" in stage and stage["DefaultRouteSettings"]["ThrottlingRateLimit"] > 0


def test_migration_function_ships_alembic() -> None:
    reqs = (ROOT / "functions" / "migrate" / "requirements.txt").read_text()
    assert re.search(r"^alembic==", reqs, re.M)
    fn = template()["Resources"]["MigrateFunction"]["Properties"]
    assert fn["CodeUri"] == "functions/migrate/" and fn["Handler"] == "app.handler"
    assert template()["Resources"]["DatabaseMigration"]["Properties"]["ServiceToken"] == {"Fn::GetAtt": ["MigrateFunction", "Arn"]}


@pytest.mark.parametrize("path", [Path("docs/DEPLOY.md")])
def test_deploy_doc_covers_the_essentials(path: Path) -> None:
    text = (ROOT / path).read_text()
    for needle in ("sam deploy --guided", "make build", "PUT /clients/", "superadmin", "sam delete", "NAT", "ACU"):
        assert needle in text, needle
